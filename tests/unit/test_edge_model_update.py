"""Model updates and heartbeats against a small HTTP peer: verified, tested, swapped
atomically, or refused with the reason while the old model keeps running."""
import hashlib
import json
import os
import stat

import pytest
import requests

from edge_agent.agent import Agent
from edge_agent.classifier import ModelError, load_model
from edge_agent.client import Credentials
from edge_agent.config import from_dict
from edge_agent.model_store import ModelStore
from tests.unit.test_edge_helpers import Peer, build_tiny_model


@pytest.fixture
def files():
    served = {}

    def handler(method, path, headers, body):
        served.setdefault("_auth", []).append(headers.get("authorization"))
        if path in served:
            return 200, {"Content-Type": "application/octet-stream"}, served[path]
        return 404, {}, {"detail": "not found"}

    peer = Peer(handler)
    peer.files = served
    yield peer
    peer.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_wrong_checksum_is_refused_and_nothing_is_installed(tmp_path, files):
    data = build_tiny_model(tmp_path / "new.onnx", version="tiny@2").read_bytes()
    files.files["/m/2"] = data
    store = ModelStore(tmp_path / "state", load_model)
    with pytest.raises(ModelError, match="sha256 mismatch"):
        store.update(requests.Session(), f"{files.url}/m/2", "tiny@2", sha(b"something else"))
    assert store.installed() is None
    assert [p.name for p in (tmp_path / "state" / "models").iterdir()] == []
    # Not downloaded again for the same version and checksum.
    n = len(files.requests)
    with pytest.raises(ModelError, match="sha256 mismatch"):
        store.update(requests.Session(), f"{files.url}/m/2", "tiny@2", sha(b"something else"))
    assert len(files.requests) == n


def test_a_model_that_fails_its_checks_is_refused(tmp_path, files):
    data = build_tiny_model(tmp_path / "bad.onnx", out_classes=4).read_bytes()
    files.files["/m/bad"] = data
    store = ModelStore(tmp_path / "state", load_model)
    with pytest.raises(ModelError, match="outputs 4 classes"):
        store.update(requests.Session(), f"{files.url}/m/bad", "bad@1", sha(data))
    assert store.installed() is None


def test_a_good_model_is_installed_atomically(tmp_path, files):
    data = build_tiny_model(tmp_path / "new.onnx", version="tiny@2").read_bytes()
    files.files["/m/2"] = data
    store = ModelStore(tmp_path / "state", load_model)
    clf = store.update(requests.Session(), f"{files.url}/m/2", "tiny@2", sha(data))
    assert clf.version == "tiny@2"
    current = store.installed()
    assert current["version"] == "tiny@2" and open(current["path"], "rb").read() == data
    assert store.load_installed().version == "tiny@2"  # what the next start will use


def agent_for(tmp_path, server_url, model):
    cfg = from_dict({"agent": {"state_dir": str(tmp_path / "state")}, "model": {"path": str(model)},
                     "cameras": [{"name": "cam0", "source": str(tmp_path / "none.mp4")}]})
    creds = Credentials(server=server_url, device_id="d1", token="secret-token")
    return Agent(cfg, creds)


def test_heartbeat_reports_health_applies_config_and_keeps_the_old_model_on_a_bad_update(tmp_path):
    new = build_tiny_model(tmp_path / "new.onnx", version="tiny@2").read_bytes()
    beats = []
    answer = {"config": {"detect_every": 3, "emit_interval_s": 2.5},
              "model": {"version": "tiny@2", "url": "/api/v1/device-models/tiny@2/", "sha256": sha(b"not it")}}

    def handler(method, path, headers, body):
        if path == "/api/v1/heartbeat/":
            beats.append((headers.get("authorization"), json.loads(body)))
            return 200, {}, answer
        if path == "/api/v1/device-models/tiny@2/":
            return 200, {}, new
        return 404, {}, {"detail": "nope"}

    peer = Peer(handler)
    agent = agent_for(tmp_path, peer.url, build_tiny_model(tmp_path / "old.onnx", version="tiny@1"))
    try:
        assert agent.heartbeat_once()
        auth, first = beats[0]
        assert auth == "Device secret-token"
        assert first["model_version"] == "tiny@1" and first["backend"] == "onnxruntime:CPUExecutionProvider"
        assert first["queue_depth"] == 0 and first["dropped"] == 0 and "cam0" in first["cameras"]
        assert {"uptime_s", "cameras"} <= set(first)
        assert agent.cfg.detector.detect_every == 3 and agent.cfg.smoothing.emit_interval_s == 2.5
        assert agent.workers[0].pipeline.detect_every == 3
        # The update had a wrong checksum: the old model stays and the error is reported.
        assert agent.models.current.version == "tiny@1"
        assert agent.heartbeat_once()
        assert "sha256 mismatch" in beats[1][1]["model_error"]
        # Overrides the server drops revert to the config file's values.
        answer["config"] = {"detect_every": 3}
        assert agent.heartbeat_once()
        assert agent.cfg.detector.detect_every == 3 and agent.cfg.smoothing.emit_interval_s == 1.0
        # The server corrects the checksum: the new model is swapped in.
        answer["model"]["sha256"] = sha(new)
        assert agent.heartbeat_once()
        assert agent.models.current.version == "tiny@2" and agent.models.error is None
        assert agent.heartbeat_once()
        assert beats[-1][1]["model_version"] == "tiny@2" and "model_error" not in beats[-1][1]
    finally:
        agent.stop()
        peer.close()


def test_model_downloads_from_another_host_do_not_carry_the_token(tmp_path, files):
    data = build_tiny_model(tmp_path / "new.onnx").read_bytes()
    files.files["/cdn/m"] = data
    store = ModelStore(tmp_path / "state", load_model)
    s = requests.Session()
    s.headers["Authorization"] = "Device secret"
    store.update(s, f"{files.url}/cdn/m", "tiny@9", sha(data), origin="https://affectwatch.example.com")
    assert files.files["_auth"] == [None]


def test_credentials_file_is_private(tmp_path):
    path = tmp_path / "creds" / "credentials.json"
    Credentials(server="http://127.0.0.1:1", device_id="d", token="t").save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Credentials.load(path).token == "t"


def test_only_the_current_and_previous_models_are_kept(tmp_path, files):
    store = ModelStore(tmp_path / "state", load_model)
    for v in range(1, 5):
        data = build_tiny_model(tmp_path / f"m{v}.onnx", version=f"tiny@{v}", seed=v).read_bytes()
        files.files[f"/m/{v}"] = data
        store.update(requests.Session(), f"{files.url}/m/{v}", f"tiny@{v}", sha(data))
    assert sorted(p.name for p in store.dir.glob("*.onnx")) == ["tiny@3.onnx", "tiny@4.onnx"]
    assert store.installed()["version"] == "tiny@4"
