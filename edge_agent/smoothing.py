"""Per-track temporal smoothing and the emission rate limit.

A single frame's expression is noisy (blinks, motion blur, half-turned heads); what an
officer cares about is a person's state over a second or so. Each track keeps an
exponential average (or a window mean) of its class probabilities, and emits at most one
event per `emit_interval_s`, labelled by `labels.decide` on the smoothed probabilities:
the valence group with the largest summed probability and that probability.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .labels import VALENCE_CLASSES, decide


@dataclass
class TrackState:
    probs: np.ndarray | None = None
    history: deque = field(default_factory=deque)
    frames: int = 0
    last_emit: float = float("-inf")


@dataclass(frozen=True)
class Emission:
    track: int
    label: str  # valence: negative / neutral / positive
    confidence: float  # smoothed probability of that valence group


class TrackSmoother:
    def __init__(self, labels, group: np.ndarray, method: str = "ema", alpha: float = 0.3, window: int = 10,
                 emit_interval_s: float = 1.0, min_frames: int = 3):
        self.labels = tuple(labels)
        self.group = group
        self.method, self.alpha, self.window = method, alpha, window
        self.emit_interval_s, self.min_frames = emit_interval_s, min_frames
        self.tracks: dict[int, TrackState] = {}

    def configure(self, method, alpha, window, emit_interval_s, min_frames) -> None:
        self.method, self.alpha, self.window = method, alpha, window
        self.emit_interval_s, self.min_frames = emit_interval_s, min_frames

    def set_model(self, labels, group: np.ndarray) -> None:
        """A new model may have other classes: histories in the old class space are dropped."""
        if tuple(labels) != self.labels:
            self.tracks.clear()
        self.labels, self.group = tuple(labels), group

    def update(self, track: int, probs: np.ndarray, now: float) -> Emission | None:
        st = self.tracks.setdefault(track, TrackState())
        st.frames += 1
        if self.method == "window":
            st.history.append(probs)
            while len(st.history) > self.window:
                st.history.popleft()
            st.probs = np.mean(st.history, axis=0)
        else:
            st.probs = probs.copy() if st.probs is None else (1 - self.alpha) * st.probs + self.alpha * probs
        if st.frames < self.min_frames or now - st.last_emit < self.emit_interval_s:
            return None
        st.last_emit = now
        _, _, v, vp = decide(st.probs, self.group)
        return Emission(track, VALENCE_CLASSES[int(v[0])], float(vp[0]))

    def forget(self, tracks) -> None:
        for t in tracks:
            self.tracks.pop(t, None)
