"""Measurements: model latency per batch size, and the whole frame pipeline on a video."""
from __future__ import annotations

import copy
import statistics
import time

import cv2
import numpy as np

from .classifier import Classifier
from .config import Config
from .pipeline import STAGES, FramePipeline, ModelHolder


def bench_model(clf: Classifier, batches=(1, 4, 16), repeat: int = 50) -> dict:
    """Median milliseconds per inference call (preprocessing included) per batch size."""
    h, w = clf.spec.size
    rng = np.random.default_rng(0)
    out = {}
    for n in batches:
        crops = [rng.integers(0, 256, (h * 3, w * 3, 3), dtype=np.uint8) for _ in range(n)]
        clf.classify(crops)
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            clf.classify(crops)
            times.append(time.perf_counter() - t)
        out[n] = {"ms_per_call": round(statistics.median(times) * 1000, 3),
                  "ms_per_face": round(statistics.median(times) * 1000 / n, 3)}
    return out


def read_frames(path: str, limit: int | None = None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while limit is None or len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def bench_video(path: str, cfg: Config, clf: Classifier, detect_every: int, limit: int | None = None,
                include_decode: bool = True) -> dict:
    """Frames per second of decode + the frame pipeline over a video, every frame processed,
    with each stage's share of the time."""
    cfg = copy.deepcopy(cfg)
    cfg.detector.detect_every = detect_every
    sink_count = [0]
    pipeline = FramePipeline("bench", cfg, ModelHolder(clf), lambda ev: sink_count.__setitem__(0, sink_count[0] + len(ev)))
    cap = cv2.VideoCapture(str(path))
    decode = 0.0
    frames = 0
    faces = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    while limit is None or frames < limit:
        t = time.perf_counter()
        ok, frame = cap.read()
        decode += time.perf_counter() - t
        if not ok:
            break
        pipeline.process(frame)
        faces += pipeline.faces
        frames += 1
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    cap.release()
    stages = dict(pipeline.timer.totals)
    if include_decode:
        stages = {"decode": decode, **stages}
    accounted = sum(stages.values())
    stages["other"] = max(0.0, total - accounted)
    return {
        "frames": frames,
        "seconds": round(total, 3),
        "fps": round(frames / total, 2) if total else 0.0,
        # CPU time is what the pipeline itself used, whatever else shares the machine.
        "cpu_ms_per_frame": round(cpu / max(frames, 1) * 1000, 2),
        "faces_per_frame": round(faces / max(frames, 1), 2),
        "events": sink_count[0],
        "share": {k: round(v / total, 4) for k, v in stages.items()},
        "ms_per_frame": {k: round(v / max(frames, 1) * 1000, 3) for k, v in stages.items()},
    }


__all__ = ["bench_model", "bench_video", "read_frames", "STAGES"]
