"""One camera's pipeline: frame → detect or track → crop → classify (one batch per frame)
→ smooth per track → event into the outbox."""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from .classifier import Classifier, crop_face
from .config import Config
from .detectors import FaceDetector, make_detector
from .smoothing import TrackSmoother
from .sources import STALL_S, CameraReader, Frame, RateMeter
from .tracking import FaceTracker

log = logging.getLogger(__name__)

STAGES = ("detect", "track", "classify", "emit")


def iso_ts(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ModelHolder:
    """The model in use. Pipelines read `.current` once per frame; a swap replaces the
    reference in one assignment, so no frame ever sees half a model."""

    def __init__(self, classifier: Classifier):
        self.current = classifier
        self.error: str | None = None


class StageTimer:
    def __init__(self):
        self.totals = defaultdict(float)  # seconds per stage

    def add(self, stage: str, seconds: float) -> None:
        self.totals[stage] += seconds


class FramePipeline:
    """Frame-by-frame processing, independent of where frames come from (a camera thread,
    a benchmark loop, a test)."""

    def __init__(self, camera: str, cfg: Config, models: ModelHolder, sink: Callable[[list[dict]], None],
                 detector: FaceDetector | None = None, run_id: str | None = None):
        self.camera = camera
        self.models = models
        self.sink = sink
        self.detector = detector or make_detector(cfg.detector)
        self.tracker = FaceTracker()
        clf = models.current
        self.smoother = TrackSmoother(clf.labels, clf.group)
        self._clf = clf
        # Track ids restart at 1 in every run; a run prefix keeps them unique per camera
        # across restarts, which the server's distinct-track counts rely on.
        self.run_id = run_id or uuid.uuid4().hex[:6]
        self.frame_index = 0
        self.timer = StageTimer()
        self.faces = 0
        self.events = 0
        # The last frame's faces: (track, box x y w h, class probabilities), for the
        # annotated copy and the preview; nothing here leaves the board.
        self.seen: list[tuple[int, np.ndarray, np.ndarray]] = []
        self.configure(cfg)

    def configure(self, cfg: Config) -> None:
        d, t, s = cfg.detector, cfg.tracker, cfg.smoothing
        self.detect_every = d.detect_every
        self.detector.min_face, self.detector.detect_width = d.min_face, d.detect_width
        self.tracker.iou_threshold, self.tracker.min_hits = t.iou_threshold, t.min_hits
        self.tracker.max_missed, self.tracker.follow = t.max_missed, t.follow
        self.smoother.configure(s.method, s.alpha, s.window, s.emit_interval_s, s.min_frames)
        self.margin = cfg.classifier.margin
        self.align = cfg.classifier.align
        self.clahe = cfg.classifier.clahe_clip if cfg.classifier.clahe else 0.0

    def track_name(self, track_id: int) -> str:
        return f"{self.run_id}-{track_id}"

    def process(self, image: np.ndarray, ts: float | None = None) -> list[dict]:
        """Process one frame; returns (and sinks) the events it produced."""
        ts = time.time() if ts is None else ts
        clf = self.models.current
        if clf is not self._clf:
            self.smoother.set_model(clf.labels, clf.group)
            self._clf = clf
        t0 = time.perf_counter()
        # A strict schedule, even with no face in view: detecting every frame of an empty
        # scene would spend the CPU for nothing, and a newcomer waits at most N frames.
        if self.frame_index % self.detect_every == 0:
            dets = self.detector.detect(image)
            t1 = time.perf_counter()
            self.tracker.update(dets, image)
            self.smoother.forget(self.tracker.ended)
            self.timer.add("detect", t1 - t0)
            self.timer.add("track", time.perf_counter() - t1)
        else:
            self.tracker.step(image)
            self.timer.add("track", time.perf_counter() - t0)
        self.frame_index += 1
        t2 = time.perf_counter()
        tracks = self.tracker.confirmed()
        self.faces = len(tracks)
        self.seen = []
        events: list[dict] = []
        if tracks:
            probs = clf.classify([crop_face(image, t.box, self.margin, t.roll if self.align else 0.0)
                                  for t in tracks], self.clahe)
            self.seen = [(t.id, t.box, p) for t, p in zip(tracks, probs)]  # boxes are replaced, never mutated
            t3 = time.perf_counter()
            self.timer.add("classify", t3 - t2)
            for t, p in zip(tracks, probs):
                # Rate limits run on capture time: a file processed faster than real time
                # emits as a live camera would.
                em = self.smoother.update(t.id, p, ts)
                if em is not None:
                    events.append({"ts": iso_ts(ts), "camera": self.camera, "track": self.track_name(t.id),
                                   "label": em.label, "confidence": round(em.confidence, 4)})
            if events:
                self.sink(events)
                self.events += len(events)
            self.timer.add("emit", time.perf_counter() - t3)
        return events


class CameraWorker:
    """A camera's reader thread plus a processing thread running its FramePipeline."""

    def __init__(self, reader: CameraReader, pipeline: FramePipeline):
        self.reader = reader
        self.pipeline = pipeline
        self.fps = RateMeter()
        self.processed = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pipeline-{reader.name}", daemon=True)

    @property
    def name(self) -> str:
        return self.reader.name

    def start(self) -> "CameraWorker":
        self.reader.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.reader.stop()
        if self._thread.ident is not None:
            self._thread.join(5.0)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            frame: Frame | None = self.reader.wait_frame(seq, timeout=0.5)
            if frame is None:
                if self.reader.finished:
                    return
                continue
            seq = frame.seq
            try:
                self.pipeline.process(frame.image, frame.ts)
                self.error = None
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the camera
                if str(exc) != self.error:
                    log.exception("camera %s: processing failed", self.name)
                self.error = str(exc)
            self.processed += 1
            self.fps.tick()

    def health(self) -> dict:
        status = self.reader.status
        stalled = self.reader.stalled_for()
        if status == "error" or self.error or stalled > STALL_S:
            status = "error"
        elif status == "ended":
            status = "stopped"  # a file that has played to its end
        h = {"status": status,
             "fps": round(self.fps.rate(), 1), "faces": self.pipeline.faces,
             "dropped_frames": self.reader.frames_dropped}
        error = self.reader.error or self.error or (f"no frame for {stalled:.0f} s" if stalled > STALL_S else None)
        if error:
            h["error"] = error[:300]  # the protocol's limit
        return h
