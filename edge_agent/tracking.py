"""Detect one frame, track the next few: an IoU tracker plus cheap template following.

On a detection frame, detections are matched to tracks greedily by IoU (a track keeps its
id while the face stays put). On the frames in between, each box is moved by template
matching a small, downscaled patch of the face in a window around its last position,
which costs a fraction of a millisecond per face where a detector costs several.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import cv2
import numpy as np

TEMPLATE_SIDE = 24  # faces are followed at this size: precise enough, and cheap
SEARCH = 0.5  # the search window extends the box by this fraction on every side
MIN_MATCH = 0.4  # below this normalised correlation the face is considered lost until the next detection


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes a (N, 4) and b (M, 4) given as x, y, w, h."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    ax1, ay1, ax2, ay2 = a[:, 0], a[:, 1], a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(ax1[:, None], bx1[None]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(ay1[:, None], by1[None]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return inter / np.maximum(union, 1e-6)


@dataclass
class Track:
    id: int
    box: np.ndarray  # x, y, w, h (float, full-frame pixels)
    hits: int = 1  # detections matched
    missed: int = 0  # consecutive detection rounds without a match
    lost: bool = False  # following failed since the last detection
    roll: float = 0.0  # the eye line's angle at the last detection (degrees; 0 without landmarks)
    template: np.ndarray | None = field(default=None, repr=False)
    _scale: float = 1.0
    _offset: tuple = (0.0, 0.0)


def _gray(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


class FaceTracker:
    def __init__(self, iou_threshold: float = 0.3, min_hits: int = 2, max_missed: int = 2, follow: bool = True):
        self.iou_threshold = iou_threshold
        self.min_hits = min_hits
        self.max_missed = max_missed
        self.follow = follow
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)
        self.ended: list[int] = []  # ids ended by the last update (their smoothing state can go)

    # Detection frames -----------------------------------------------------------------
    def update(self, detections: np.ndarray, frame: np.ndarray) -> None:
        """Match detections (N, >=4) to tracks; start new tracks; end stale ones."""
        raw = np.asarray(detections, dtype=np.float32)
        raw = raw.reshape(-1, raw.shape[1]) if raw.size else np.zeros((0, 6), np.float32)
        dets = raw[:, :4]
        rolls = raw[:, 5] if raw.shape[1] > 5 else np.zeros(len(raw), np.float32)
        boxes = np.array([t.box for t in self.tracks], dtype=np.float32).reshape(-1, 4)
        overlap = iou(boxes, dets)
        matched_t, matched_d = set(), set()
        if overlap.size:
            for flat in np.argsort(-overlap, axis=None):
                ti, di = np.unravel_index(flat, overlap.shape)
                if overlap[ti, di] < self.iou_threshold:
                    break
                if ti in matched_t or di in matched_d:
                    continue
                matched_t.add(ti)
                matched_d.add(di)
                t = self.tracks[ti]
                t.box, t.hits, t.missed, t.lost = dets[di].copy(), t.hits + 1, 0, False
                t.roll = float(rolls[di])
        self.ended = []
        kept = []
        for i, t in enumerate(self.tracks):
            if i not in matched_t:
                t.missed += 1
                if t.missed > self.max_missed:
                    self.ended.append(t.id)
                    continue
            kept.append(t)
        for di in range(len(dets)):
            if di not in matched_d:
                kept.append(Track(next(self._ids), dets[di].copy(), roll=float(rolls[di])))
        self.tracks = kept
        if self.follow:
            gray = _gray(frame)
            for t in self.tracks:
                if t.missed == 0:
                    self._take_template(t, gray)

    # Frames in between ----------------------------------------------------------------
    def step(self, frame: np.ndarray) -> None:
        """Move each box to where its face went, without a detector."""
        if not self.follow or not self.tracks:
            return
        gray = _gray(frame)
        for t in self.tracks:
            if t.template is None or t.lost:
                continue
            self._follow(t, gray)

    def _take_template(self, t: Track, gray: np.ndarray) -> None:
        x, y, w, h = t.box
        scale = TEMPLATE_SIDE / max(w, 1.0)
        x0, y0 = int(max(x, 0)), int(max(y, 0))
        x1, y1 = int(min(x + w, gray.shape[1])), int(min(y + h, gray.shape[0]))
        if x1 - x0 < 8 or y1 - y0 < 8:
            t.template = None
            return
        patch = gray[y0:y1, x0:x1]
        t.template = cv2.resize(patch, (max(4, round(patch.shape[1] * scale)), max(4, round(patch.shape[0] * scale))),
                                interpolation=cv2.INTER_AREA)
        t._scale = scale
        # Offset of the template inside the (possibly clipped) box.
        t._offset = (x0 - x, y0 - y)

    def _follow(self, t: Track, gray: np.ndarray) -> None:
        x, y, w, h = t.box
        scale = t._scale
        mx, my = w * SEARCH, h * SEARCH
        sx0, sy0 = int(max(x - mx, 0)), int(max(y - my, 0))
        sx1, sy1 = int(min(x + w + mx, gray.shape[1])), int(min(y + h + my, gray.shape[0]))
        if sx1 <= sx0 or sy1 <= sy0:
            t.lost = True
            return
        window = gray[sy0:sy1, sx0:sx1]
        small = cv2.resize(window, (max(1, round(window.shape[1] * scale)), max(1, round(window.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        th, tw = t.template.shape
        if small.shape[0] < th or small.shape[1] < tw:
            t.lost = True
            return
        result = cv2.matchTemplate(small, t.template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(result)
        if best < MIN_MATCH:
            t.lost = True
            return
        ox, oy = t._offset
        t.box = np.array([sx0 + bx / scale - ox, sy0 + by / scale - oy, w, h], dtype=np.float32)

    # Output ---------------------------------------------------------------------------
    def confirmed(self) -> list[Track]:
        """Tracks worth classifying on this frame."""
        # A track the last detection missed is still shown while following holds it:
        # Haar misses a face now and then, and a gap would split the track's history.
        return [t for t in self.tracks if t.hits >= self.min_hits and not t.lost
                and (t.missed == 0 or (self.follow and t.template is not None))]

    def reset(self) -> None:
        self.ended = [t.id for t in self.tracks]
        self.tracks = []
