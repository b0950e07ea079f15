"""The edge agent as a real process against the real backend (uvicorn on the test
database): enrollment, faces in a video turned into events, exactly-once delivery through
a backend outage and through `kill -9`, and a model update with a wrong checksum."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from apps.sites.enrollment import create_enrollment_code
from apps.sites.models import Camera, Device
from apps.telemetry.models import EmotionEvent, Label
from tests.unit.test_edge_helpers import Peer, build_tiny_model, scene_video

ROOT = Path(__file__).resolve().parents[2]


def wait_for(cond, timeout, what, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class AgentRun:
    """`python -m edge_agent run` in its own process, on a state directory that outlives it."""

    def __init__(self, tmp_path: Path, video: Path, model: Path, heartbeat_s: float = 1.0, loop=False, extra=""):
        self.state = tmp_path / "state"
        self.config = tmp_path / "agent.toml"
        self.log_path = tmp_path / "agent.log"
        self.config.write_text(f"""
[agent]
state_dir = "{self.state}"
heartbeat_interval_s = {heartbeat_s}

[model]
path = "{model}"

[smoothing]
emit_interval_s = 0.5

[publisher]
backoff_base_s = 0.2
backoff_max_s = 1.0
timeout_s = 3.0

[[cameras]]
name = "cam0"
source = "{video}"
loop = {str(loop).lower()}
{extra}
""")
        self.proc = None

    def enroll(self, server_url: str, code: str):
        return subprocess.run([sys.executable, "-m", "edge_agent", "enroll", "--server", server_url, "--code", code,
                               "--config", str(self.config), "--name", "test-board"],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "--config", str(self.config)],
                                     cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"agent still running after {timeout} s; log:\n{self.log_text()[-3000:]}") from None

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def device_id(self):
        return json.loads((self.state / "credentials.json").read_text())["device_id"]

    def pending(self) -> list[dict]:
        db = sqlite3.connect(self.state / "outbox.sqlite3")
        try:
            return [json.loads(b) for (b,) in db.execute("SELECT body FROM events ORDER BY id")]
        finally:
            db.close()

    def formed_batches(self) -> int:
        db = sqlite3.connect(self.state / "outbox.sqlite3")
        try:
            return db.execute("SELECT COUNT(DISTINCT batch_id) FROM events WHERE batch_id IS NOT NULL").fetchone()[0]
        finally:
            db.close()

    def counter(self, name) -> int:
        db = sqlite3.connect(self.state / "outbox.sqlite3")
        try:
            row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        finally:
            db.close()
        return row[0] if row else 0


def server_events(device_id):
    return [(e.camera.name, e.track, e.ts.isoformat(timespec="milliseconds"), e.label) for e in
            EmotionEvent.objects.filter(device_id=device_id).select_related("camera")]


def key(e: dict):
    """The agent writes UTC as `Z`; the server's datetimes print as `+00:00`."""
    return e["camera"], e["track"], e["ts"].replace("Z", "+00:00")


def assert_exactly_once(rows):
    dupes = [k for k, n in Counter((c, t, ts) for c, t, ts, _ in rows).items() if n > 1]
    assert not dupes, f"{len(dupes)} event(s) stored twice, e.g. {dupes[:3]}"


@pytest.fixture
def model(tmp_path):
    return build_tiny_model(tmp_path / "tiny.onnx", version="tiny@1")


@pytest.fixture
def enrolled(platform_server, tenant, tmp_path, model):
    def make(frames=90, n_faces=2, fps=30.0, loop=False, heartbeat_s=1.0, extra="", site=None):
        video = scene_video(tmp_path / "scene.mp4", n_faces, frames, fps)
        agent = AgentRun(tmp_path, video, model, heartbeat_s, loop, extra)
        _, code = create_enrollment_code(site or tenant.site)
        res = agent.enroll(platform_server.url, code)
        assert res.returncode == 0, res.stderr
        return agent

    agents = []
    yield lambda **kw: agents.append(make(**kw)) or agents[-1]
    for a in agents:
        a.stop()


def test_enrolled_agent_streams_the_faces_of_a_video(enrolled, tenant, platform_server):
    agent = enrolled(frames=120, n_faces=2)
    creds = agent.state / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    device = Device.objects.get(id=agent.device_id)
    assert device.site_id == tenant.site.id
    # A one-time code: using it again is refused.
    again = subprocess.run([sys.executable, "-m", "edge_agent", "enroll", "--server", platform_server.url,
                            "--code", "WRONG-CODE-0000", "--credentials", str(agent.state / "other.json")],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert again.returncode == 1 and "enrollment refused (403)" in again.stderr

    assert agent.start().wait(90) == 0, agent.log_text()[-3000:]
    rows = server_events(agent.device_id)
    tracks = Counter(t for _, t, _, _ in rows)
    # Two faces, each followed as one track for the whole clip, an event every 0.5 s.
    face_tracks = [t for t, n in tracks.items() if n >= 4]
    assert len(face_tracks) == 2, tracks
    assert {c for c, _, _, _ in rows} == {"cam0"}
    assert_exactly_once(rows)
    assert agent.pending() == [] and agent.counter("accepted") == len(rows)
    device.refresh_from_db()
    assert device.model_version == "tiny@1"
    assert device.health["backend"] == "onnxruntime:CPUExecutionProvider"
    assert device.health["cameras"]["cam0"]["status"] in ("ok", "stopped")


@pytest.mark.shared_model("yunet/face_detection_yunet.onnx")
def test_an_agent_with_yunet_streams_every_face_of_a_video(enrolled):
    from tests.support import shared_model

    detector = f'[detector]\nkind = "yunet"\nmodel = "{shared_model("yunet/face_detection_yunet.onnx")}"\n'
    agent = enrolled(frames=120, n_faces=3, extra=detector)
    assert agent.start().wait(90) == 0, agent.log_text()[-3000:]
    rows = server_events(agent.device_id)
    tracks = Counter(t for _, t, _, _ in rows)
    assert len([t for t, n in tracks.items() if n >= 4]) == 3, tracks
    assert_exactly_once(rows)


def test_backend_outage_every_event_arrives_exactly_once(enrolled, platform_server):
    agent = enrolled(frames=240, n_faces=2)  # 8 s of video
    agent.start()
    wait_for(lambda: EmotionEvent.objects.filter(device_id=agent.device_id).exists(), 30, "first events")
    platform_server.stop()
    down_at = time.time()
    time.sleep(3.5)
    backlog = len(agent.pending())
    assert backlog > 0  # events kept coming and waited
    platform_server.start()
    assert agent.wait(90) == 0, agent.log_text()[-3000:]
    rows = server_events(agent.device_id)
    assert_exactly_once(rows)
    assert agent.pending() == [] and agent.counter("accepted") == len(rows)
    assert agent.counter("dropped") == 0 and agent.counter("rejected") == 0
    # Events made while the server was down are there.
    during = [r for r in rows if down_at + 0.5 < _epoch(r[2]) < down_at + 3.0]
    assert during, "no events from the outage window arrived"
    assert "no answer" in agent.log_text()


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_kill_9_mid_stream_then_restart_loses_nothing(enrolled, platform_server):
    agent = enrolled(frames=300, n_faces=3)  # 10 s of video
    agent.start()
    wait_for(lambda: EmotionEvent.objects.filter(device_id=agent.device_id).count() >= 6, 30, "events")
    # Die with a backlog and a batch formed (its id committed) but not acknowledged.
    platform_server.stop()
    time.sleep(2.0)
    agent.kill9()
    platform_server.start()
    pending = agent.pending()
    assert pending and agent.formed_batches() >= 1
    before = {(c, t, ts) for c, t, ts, _ in server_events(agent.device_id)}
    first_run = {t.split("-")[0] for _, t, _ in before} | {e["track"].split("-")[0] for e in pending}
    assert len(first_run) == 1
    # Restart on the same state: the backlog goes out, and the clip plays again (new run).
    agent.start()
    assert agent.wait(120) == 0, agent.log_text()[-3000:]
    rows = server_events(agent.device_id)
    assert_exactly_once(rows)
    got = {(c, t, ts) for c, t, ts, _ in rows}
    missing = {key(e) for e in pending} - got
    assert not missing, f"{len(missing)} of {len(pending)} pending event(s) never arrived"
    assert before <= got
    run1 = {r for r in got if r[1].startswith(next(iter(first_run)) + "-")}
    assert run1 == before | {key(e) for e in pending}
    assert agent.pending() == []


def test_model_update_with_a_wrong_checksum_is_refused(enrolled, platform_server, tmp_path):
    new = build_tiny_model(tmp_path / "new.onnx", version="tiny@2", seed=5).read_bytes()
    peer = Peer(lambda m, p, h, b: (200, {}, new) if p == "/models/tiny@2.onnx" else (404, {}, {"detail": "no"}))
    broken = '[[cameras]]\nname = "dock"\nsource = "rtsp://127.0.0.1:9/unplugged"\n'
    agent = enrolled(frames=60, loop=True, heartbeat_s=0.5, extra=broken)
    try:
        agent.start()
        device = Device.objects.get(id=agent.device_id)
        wait_for(lambda: Device.objects.get(id=device.id).model_version == "tiny@1", 30, "a first heartbeat")
        # A camera that cannot be opened is reported; the other one keeps streaming.
        # Both cameras' states come in heartbeats, each as its reader gets there (the broken one
        # may be reported before the good one has opened), so wait for the pair.
        def reported():
            cams = {c.name: c for c in Camera.objects.filter(device=device)}
            return cams if cams.get("dock") and cams["dock"].status == "error" and \
                cams.get("cam0") and cams["cam0"].status == "ok" else None
        cams = wait_for(reported, 30, "the broken camera and the working one in a heartbeat")
        assert "cannot open" in cams["dock"].error
        wait_for(lambda: EmotionEvent.objects.filter(device=device, camera__name="cam0").exists(), 30, "events")
        Device.objects.filter(id=device.id).update(
            desired_model_version="tiny@2", desired_model_url=f"{peer.url}/models/tiny@2.onnx",
            desired_model_sha256=hashlib.sha256(b"another file").hexdigest())
        health = wait_for(lambda: (Device.objects.get(id=device.id).health or {}).get("model_error"), 30,
                          "the model error in a heartbeat")
        assert "sha256 mismatch" in health
        assert Device.objects.get(id=device.id).model_version == "tiny@1"  # the old model runs on
        assert agent.proc.poll() is None
        # With the right checksum the new model is swapped in.
        Device.objects.filter(id=device.id).update(desired_model_sha256=hashlib.sha256(new).hexdigest())
        wait_for(lambda: Device.objects.get(id=device.id).model_version == "tiny@2", 30, "the new model")
        assert "model_error" not in Device.objects.get(id=device.id).health
    finally:
        agent.stop()
        peer.close()


def test_a_real_agent_as_canary_completes_a_roll_out_and_rolls_back(enrolled, tenant, make_site, make_user,
                                                                     tmp_path):
    """Deploy a registered version to a site whose one board is a real agent: desired and
    running versions at each step, the deployment complete once the board runs it, and a
    roll back that the board carries out (to the shipped model: it ran an unregistered one)."""
    from django.conf import settings

    from apps.accounts.models import Role
    from apps.training import registry, rollout
    from apps.training.models import Deployment, ModelVersion

    site = make_site(tenant.org, "line-two")
    researcher = make_user(tenant.org, Role.RESEARCHER, all_sites=True)
    media = Path(settings.MEDIA_ROOT) / "training" / str(tenant.org.id) / "rollout-test"
    media.mkdir(parents=True, exist_ok=True)
    onnx = build_tiny_model(media / "model.onnx", version="acme-line@1", seed=3)
    mv = ModelVersion.objects.create(
        organisation=tenant.org, version="acme-line@1", name="acme-line", number=1, onnx_file=str(
            onnx.relative_to(settings.MEDIA_ROOT)), sha256=registry.sha256_of(onnx), size=onnx.stat().st_size)
    agent = enrolled(frames=60, loop=True, heartbeat_s=0.5, site=site)
    try:
        agent.start()
        board = wait_for(lambda: Device.objects.filter(id=agent.device_id, online=True, model_version="tiny@1").first(),
                         30, "the board online, running its own model")
        dep = rollout.deploy(mv, site, researcher, board)
        board.refresh_from_db()
        assert (dep.status, board.desired_model_version, board.model_version) == ("canary", "acme-line@1", "tiny@1")
        # The agent downloads with its token, checks the sha256, test-runs and swaps; the
        # deployment completes when every board of the site runs it.
        wait_for(lambda: Device.objects.get(id=board.id).model_version == "acme-line@1", 30, "the swap")
        dep = wait_for(lambda: Deployment.objects.filter(pk=dep.pk, status="complete").first(), 10, "complete")
        assert [e["event"] for e in dep.events][-1] == "every board runs acme-line@1"
        rollout.rollback(dep, researcher)
        shipped = registry.shipped_version()
        board.refresh_from_db()
        assert board.desired_model_version == shipped.version and board.model_version == "acme-line@1"
        wait_for(lambda: Device.objects.get(id=board.id).model_version == shipped.version, 30, "the roll back")
        assert "model_error" not in Device.objects.get(id=board.id).health
        assert EmotionEvent.objects.filter(device=board).exists() and agent.proc.poll() is None
    finally:
        agent.stop()


def test_simulate_posts_plausible_streams_through_the_ingest_api(platform_server, tenant):
    res = subprocess.run([sys.executable, "-m", "edge_agent", "simulate", "--server", platform_server.url,
                          "--token", tenant.token, "--rate", "40", "--duration", "3", "--cameras", "2", "--seed", "7"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["generated"] >= 100 and summary["accepted"] == summary["generated"]
    assert summary["rejected"] == 0 and summary["left_in_outbox"] == 0
    rows = server_events(tenant.device.id)
    assert len(rows) == summary["generated"]
    assert_exactly_once(rows)
    cameras = Counter(c for c, _, _, _ in rows)
    assert set(cameras) == {"sim0", "sim1"}
    tracks = {(c, t) for c, t, _, _ in rows}
    assert 2 * 3 <= len(tracks) <= 2 * 6  # a few people per camera
    labels = Counter(label for _, _, _, label in rows)
    assert labels.most_common(1)[0][0] == Label.NEUTRAL


def test_a_busy_four_camera_board_is_never_throttled(platform_server, tenant):
    """100 events a second from four cameras for 20 s: the publisher gathers them into
    about one request a second, well inside the server's per-board budget at its
    default (600 a minute, a batch costing 1 + events / 100)."""
    from apps.sites.models import Camera

    for cam in ("sim2", "sim3"):
        Camera.objects.get_or_create(device=tenant.device, name=cam)
    res = subprocess.run([sys.executable, "-m", "edge_agent", "simulate", "--server", platform_server.url,
                          "--token", tenant.token, "--rate", "100", "--duration", "20", "--cameras", "4", "--seed", "3"],
                         capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["throttled"] == 0 and summary["accepted"] == summary["generated"] >= 1900
    assert summary["batches"] <= 2 * 20 + 5  # gathered: about one request a second, not one per event
