"""The running agent: cameras, pipelines, the outbox and its publisher, heartbeats with
remote configuration and model updates."""
from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from functools import partial

import requests

from .classifier import ModelError, load_model
from .client import Credentials, device_session
from .config import REMOTE_KEYS, Config, apply_remote
from .outbox import Outbox
from .pipeline import CameraWorker, FramePipeline, ModelHolder
from .model_store import ModelStore, origin_of
from .publisher import Backoff, Publisher
from .sources import CameraReader

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, cfg: Config, creds: Credentials | None):
        self.cfg = cfg
        self.file_cfg = cfg  # the config file as written; server overrides apply on top of it
        self.creds = creds
        self.started = time.monotonic()
        self.run_id = uuid.uuid4().hex[:6]
        self.stop_event = threading.Event()
        self.outbox = Outbox(cfg.outbox_path, cfg.outbox.max_mb)
        if restored := self.outbox.restore():  # another chance after a restart (and perhaps a server fix)
            log.warning("%d event(s) set aside earlier are back in line", restored)
        self._loader = partial(load_model, backend=cfg.model.backend, providers=cfg.model.providers,
                               engine=cfg.model.engine or None, threads=cfg.model.threads, valence_map=cfg.valence,
                               cache_dir=cfg.state_dir / "trt-cache")
        self.store = ModelStore(cfg.state_dir, self._loader)
        clf = self.store.load_installed() or self._loader(cfg.model_path)
        self.models = ModelHolder(clf)
        self.workers: list[CameraWorker] = []
        for cam in cfg.cameras:
            if not cam.enabled:
                continue
            pipeline = FramePipeline(cam.name, cfg, self.models, self.outbox.put_many, run_id=self.run_id)
            self.workers.append(CameraWorker(CameraReader(cam), pipeline))
        self.session = device_session(creds) if creds else None
        self.ready = threading.Event()
        self.publisher = None
        if creds:
            self.publisher = Publisher(self.outbox, self.session, creds.url(creds.ingest_url), cfg.outbox.batch_size,
                                       cfg.publisher.backoff_base_s, cfg.publisher.backoff_max_s,
                                       cfg.publisher.timeout_s, ready=self.ready, linger_s=cfg.publisher.linger_s)
        self.heartbeat_error: str | None = None
        self.config_ignored: list[str] = []
        self._hb_thread = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)

    # Lifecycle ----------------------------------------------------------------------------
    def start(self) -> "Agent":
        log.info("agent run %s: %d camera(s), model %s on %s, outbox %s (%d pending)", self.run_id,
                 len(self.workers), self.models.current.version, self.models.current.backend.name,
                 self.cfg.outbox_path, self.outbox.depth())
        for w in self.workers:
            w.start()
        if self.publisher:
            self.publisher.start()
            self._hb_thread.start()
        else:
            log.warning("not enrolled: events stay in the outbox until the board is enrolled")
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for w in self.workers:
            w.stop()
        if self.publisher:
            self.publisher.stop()
        self.outbox.close()

    def run_forever(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())
        self.start()
        try:
            while not self.stop_event.wait(1.0):
                if self.workers and all(w.reader.status == "ended" and not w._thread.is_alive() for w in self.workers):
                    log.info("all sources ended")
                    break
            if self.publisher and not self.stop_event.is_set():
                # Sources ended (files): deliver what is left before exiting.
                deadline = time.monotonic() + 60
                while self.outbox.depth() and time.monotonic() < deadline and not self.stop_event.is_set():
                    time.sleep(0.2)
        finally:
            log.info("stopping")
            self.stop()

    # Health -------------------------------------------------------------------------------
    def health(self) -> dict:
        clf = self.models.current
        body = {
            "uptime_s": round(time.monotonic() - self.started, 1),
            "model_version": clf.version[:100],
            "backend": clf.backend.name[:100],
            "queue_depth": self.outbox.depth(),
            "dropped": self.outbox.dropped,
            "rejected": self.outbox.counter("rejected"),
            "set_aside": self.outbox.set_aside_count(),
            "cameras": {w.name: w.health() for w in self.workers},
        }
        if self.models.error:
            body["model_error"] = self.models.error[:500]
        if self.publisher and self.publisher.last_error:
            body["publish_error"] = self.publisher.last_error
        if self.config_ignored:
            body["config_error"] = "; ".join(self.config_ignored)[:500]
        return body

    # Heartbeats ---------------------------------------------------------------------------
    def interval(self) -> float:
        return self.cfg.agent.heartbeat_interval_s or self.creds.heartbeat_interval_s or 30.0

    def _heartbeat_loop(self) -> None:
        backoff = Backoff(1.0, 60.0)
        while not self.stop_event.is_set():
            try:
                ok = self.heartbeat_once()
            except Exception:  # noqa: BLE001 - heartbeats must go on whatever happens
                log.exception("heartbeat failed")
                ok = False
            wait = self.interval() if ok else min(backoff.next_delay(), self.interval())
            if ok:
                backoff.reset()
            self.stop_event.wait(wait)

    def heartbeat_once(self) -> bool:
        url = self.creds.url(self.creds.heartbeat_url)
        try:
            r = self.session.post(url, json=self.health(), timeout=self.cfg.publisher.timeout_s)
        except requests.RequestException as exc:
            self._hb_failed(f"no answer from {url}: {type(exc).__name__}")
            return False
        if r.status_code != 200:
            self._hb_failed(f"heartbeat answered {r.status_code}: {r.text[:200]}")
            return False
        if self.heartbeat_error:
            log.info("heartbeat: server reachable again")
        self.heartbeat_error = None
        self.ready.set()  # cameras are announced: ingest may start
        try:
            answer = r.json() or {}
        except ValueError:
            answer = {}
        if isinstance(answer.get("config"), dict):
            self.apply_config(answer["config"])
        if answer.get("model"):
            self.update_model(answer["model"])
        elif self.models.error:
            self.models.error = None  # the server no longer asks for the model that failed
        return True

    def _hb_failed(self, message: str) -> None:
        if message != self.heartbeat_error:
            log.warning("heartbeat: %s", message)
        self.heartbeat_error = message

    def apply_config(self, overrides: dict) -> None:
        """The server sends all of its overrides every time: they apply on top of the
        config file, so an override the server drops reverts to the file's value."""
        new, _, ignored = apply_remote(self.file_cfg, overrides)
        for line in ignored:
            if line not in self.config_ignored:
                log.warning("remote config ignored: %s", line)
        self.config_ignored = ignored
        changed = [key for key, (section, attr) in REMOTE_KEYS.items()
                   if getattr(getattr(new, section), attr) != getattr(getattr(self.cfg, section), attr)]
        if not changed:
            return
        log.info("remote config: %s", ", ".join(
            f"{k}={getattr(getattr(new, REMOTE_KEYS[k][0]), REMOTE_KEYS[k][1])!r}" for k in changed))
        self.cfg = new
        for w in self.workers:
            w.pipeline.configure(new)
        if self.publisher:
            self.publisher.batch_size = new.outbox.batch_size
            self.publisher._limit = new.outbox.batch_size

    def update_model(self, desired: dict) -> None:
        version, url, sha = desired.get("version"), desired.get("url"), desired.get("sha256")
        if not version or not url or not sha:
            self.models.error = f"model update without version, url or sha256: {desired!r}"[:300]
            return
        if version == self.models.current.version and sha.lower() == self.models.current.info.sha256:
            self.models.error = None
            return
        try:
            clf = self.store.update(self.session, self.creds.url(url), version, sha,
                                    origin=origin_of(self.creds.server))
        except ModelError as exc:
            if str(exc) != self.models.error:
                log.error("%s", exc)
            self.models.error = str(exc)
            return
        old = self.models.current.version
        self.models.current = clf
        self.models.error = None
        log.info("model update: %s → %s on %s", old, clf.version, clf.backend.name)

