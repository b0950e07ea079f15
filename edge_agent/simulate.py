"""`simulate`: plausible label streams through the real ingest API, for demos and load
tests, without cameras or a model.

Each camera sees a few people at a time (tracks come and go); each person's state drifts
slowly and most of the time reads neutral, with a site-wide "stress" level that rises and
falls over minutes. Events go through the same outbox and publisher as the agent's.
"""
from __future__ import annotations

import logging
import math
import random
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests

from .client import USER_AGENT
from .outbox import Outbox
from .pipeline import iso_ts
from .publisher import Publisher

log = logging.getLogger(__name__)
#: Seconds between heartbeats, as the agent's default (the server releases a board's
#: minutes only up to its last heartbeat and marks it offline after three minutes).
HEARTBEAT_INTERVAL_S = 30.0


@dataclass
class SimTrack:
    name: str
    bias: float  # this person's own lean: < 0 more negative, > 0 more positive
    ends_at: float
    state: str = "neutral"


class LabelStream:
    """Deterministic (seeded) label events for `cameras` cameras."""

    def __init__(self, cameras: int = 1, tracks_per_camera: int = 3, seed: int | None = None):
        self.rng = random.Random(seed)
        self.cameras = [f"sim{i}" for i in range(cameras)]
        self.tracks_per_camera = tracks_per_camera
        self.run = uuid.uuid4().hex[:6]
        self._n = 0
        self.tracks: dict[str, list[SimTrack]] = {c: [] for c in self.cameras}
        self.t0 = time.time()

    def _new_track(self, now: float) -> SimTrack:
        self._n += 1
        return SimTrack(f"{self.run}-{self._n}", self.rng.gauss(0, 0.5), now + self.rng.uniform(20, 180))

    def stress(self, now: float) -> float:
        """Site-wide drift in [-1, 1]: a slow wave plus a slower one."""
        t = now - self.t0
        return 0.6 * math.sin(t / 97.0) + 0.4 * math.sin(t / 431.0 + 1.3)

    def event(self, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        camera = self.rng.choice(self.cameras)
        live = [t for t in self.tracks[camera] if t.ends_at > now]
        while len(live) < self.tracks_per_camera:
            live.append(self._new_track(now))
        self.tracks[camera] = live
        track = self.rng.choice(live)
        lean = track.bias - self.stress(now) * 0.8
        # Mostly neutral; the lean shifts weight to positive or negative. States are sticky
        # (people do not flip mood every second).
        p_neg = min(0.6, max(0.03, 0.12 - 0.15 * lean))
        p_pos = min(0.6, max(0.03, 0.12 + 0.15 * lean))
        if self.rng.random() < 0.3:
            r = self.rng.random()
            track.state = "negative" if r < p_neg else "positive" if r < p_neg + p_pos else "neutral"
        conf = min(0.99, max(0.34, self.rng.gauss(0.72 if track.state != "neutral" else 0.8, 0.1)))
        return {"ts": iso_ts(now), "camera": camera, "track": track.name, "label": track.state,
                "confidence": round(conf, 3)}


def announce(session: requests.Session, server: str, cameras: list[str], timeout: float = 10.0) -> None:
    """A heartbeat naming the simulated cameras (the server rejects events from cameras no
    heartbeat announced)."""
    body = {"uptime_s": 0.0, "model_version": "simulator", "backend": "simulator", "queue_depth": 0, "dropped": 0,
            "cameras": {c: {"status": "ok", "fps": 0.0} for c in cameras}}
    r = session.post(f"{server}/api/v1/heartbeat/", json=body, timeout=timeout)
    if r.status_code != 200:
        raise RuntimeError(f"heartbeat answered {r.status_code}: {r.text[:200]}")


def simulate(server: str, token: str, rate: float, duration: float | None = None, cameras: int = 1,
             outbox_path: str | Path | None = None, batch_size: int = 200, seed: int | None = None,
             drain_timeout: float = 60.0, linger_s: float = 1.0, out=print) -> dict:
    server = server.rstrip("/")
    session = requests.Session()
    session.headers.update({"Authorization": f"Device {token}", "User-Agent": USER_AGENT + " (simulator)"})
    stream = LabelStream(cameras, seed=seed)
    announce(session, server, stream.cameras)
    tmpdir = None
    if outbox_path is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="affectwatch-sim-")
        outbox_path = Path(tmpdir.name) / "outbox.sqlite3"
    # NORMAL sync: a simulator's events are not worth an fsync each.
    outbox = Outbox(outbox_path, synchronous="NORMAL")
    publisher = Publisher(outbox, session, f"{server}/api/v1/ingest/", batch_size=batch_size,
                          backoff_base_s=0.5, backoff_max_s=10.0, linger_s=linger_s).start()
    start = time.monotonic()
    generated = 0
    tick = 0.05
    next_report = start + 5
    next_heartbeat = start + HEARTBEAT_INTERVAL_S
    try:
        while duration is None or time.monotonic() - start < duration:
            if time.monotonic() >= next_heartbeat:  # a board is online while it heartbeats
                next_heartbeat += HEARTBEAT_INTERVAL_S
                try:
                    announce(session, server, stream.cameras)
                except (requests.RequestException, RuntimeError) as exc:
                    log.warning("heartbeat failed: %s", exc)
            due = int((time.monotonic() - start) * rate) - generated
            if due > 0:
                # Spread the tick's events over the tick, as real emissions would be.
                now = time.time()
                outbox.put_many([stream.event(now - tick * (due - k) / due) for k in range(due)])
                generated += due
            if time.monotonic() >= next_report:
                out(f"{generated} events generated, {publisher.accepted} accepted, queue {outbox.depth()}")
                next_report += 5
            time.sleep(tick)
    except KeyboardInterrupt:
        pass
    elapsed = time.monotonic() - start
    deadline = time.monotonic() + drain_timeout
    while outbox.depth() and time.monotonic() < deadline:
        time.sleep(0.1)
    publisher.stop()
    summary = {"generated": generated, "accepted": publisher.accepted, "rejected": publisher.rejected,
               "duplicate_batches": publisher.duplicates, "batches": publisher.sent_batches,
               "throttled": publisher.throttled,
               "left_in_outbox": outbox.depth(), "seconds": round(elapsed, 2),
               "rate": round(generated / elapsed, 1) if elapsed else 0.0}
    outbox.close()
    if tmpdir:
        tmpdir.cleanup()
    return summary
