"""Face detectors behind one interface: `detect(frame) -> Nx6 array of x, y, w, h, score,
roll` — roll is the eye line's angle in degrees (image coordinates, clockwise positive)
where the detector gives eye landmarks (YuNet), else 0.

Haar (ships with OpenCV, the default) and YuNet (`cv2.FaceDetectorYN`, when a model file
is configured). Both run on a frame downscaled to `detect_width`: detection cost grows
with the pixel count while faces big enough to classify survive the downscale.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .config import DetectorSection

HAAR_FILE = "haarcascade_frontalface_default.xml"
HAAR_WINDOW = 24  # the cascade's smallest face, in detection pixels


def find_cascade() -> str:
    """The frontal-face cascade: pip's OpenCV ships it in cv2.data; JetPack's apt OpenCV
    (the one with GStreamer, needed for CSI cameras) puts it under /usr/share."""
    candidates = []
    data = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if data:
        candidates.append(Path(data) / HAAR_FILE)
    for prefix in ("/usr/share/opencv4", "/usr/local/share/opencv4", "/usr/share/opencv", "/usr/local/share/opencv"):
        candidates.append(Path(prefix) / "haarcascades" / HAAR_FILE)
    for path in candidates:
        if path.is_file():
            return str(path)
    raise OSError(f"{HAAR_FILE} not found (looked in {', '.join(str(p.parent) for p in candidates)}); "
                  "install OpenCV's data files or configure detector.model for YuNet")


class FaceDetector:
    name = "base"

    def __init__(self, min_face: int = 48, detect_width: int = 320):
        self.min_face = min_face
        self.detect_width = detect_width

    def _scale(self, frame: np.ndarray) -> float:
        w = frame.shape[1]
        return self.detect_width / w if self.detect_width and w > self.detect_width else 1.0

    def detect(self, frame: np.ndarray) -> np.ndarray:
        scale = self._scale(frame)
        small = frame if scale == 1.0 else cv2.resize(
            frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        boxes = self._detect(small, scale)
        if len(boxes) == 0:
            return np.zeros((0, 6), dtype=np.float32)
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.shape[1] == 5:  # no landmarks: roll unknown, taken as level
            boxes = np.hstack([boxes, np.zeros((len(boxes), 1), np.float32)])
        boxes[:, :4] /= scale
        keep = (boxes[:, 2] >= self.min_face) & (boxes[:, 3] >= self.min_face)
        return boxes[keep]

    def _detect(self, image: np.ndarray, scale: float) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class HaarDetector(FaceDetector):
    name = "haar"

    def __init__(self, min_face=48, detect_width=320, scale_factor=1.1, min_neighbors=5, cascade: str | None = None):
        super().__init__(min_face, detect_width)
        path = cascade or find_cascade()
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise OSError(f"cannot load the Haar cascade {path}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def _detect(self, image, scale):
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        side = max(HAAR_WINDOW, int(self.min_face * scale * 0.9))
        faces = self.cascade.detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side))
        if len(faces) == 0:
            return []
        faces = np.asarray(faces, dtype=np.float32)
        return np.hstack([faces, np.ones((len(faces), 1), dtype=np.float32)])  # Haar has no score


class YuNetDetector(FaceDetector):
    name = "yunet"

    def __init__(self, model: str, min_face=48, detect_width=320, score_threshold=0.7):
        super().__init__(min_face, detect_width)
        if not Path(model).is_file():
            raise OSError(f"YuNet model {model} not found")
        self.model = model
        self.score_threshold = score_threshold
        self._net = None
        self._size = None

    def _detect(self, image, scale):
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        size = (image.shape[1], image.shape[0])
        if self._net is None:
            self._net = cv2.FaceDetectorYN.create(self.model, "", size, self.score_threshold, 0.3, 5000)
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(image)
        if faces is None or len(faces) == 0:
            return []
        # Landmarks 4:6 and 6:8 are the eye on the image's left and the one on its right.
        roll = np.degrees(np.arctan2(faces[:, 7] - faces[:, 5], faces[:, 6] - faces[:, 4]))
        return np.hstack([faces[:, :4], faces[:, 14:15], roll[:, None]])


def make_detector(cfg: DetectorSection) -> FaceDetector:
    if cfg.kind == "yunet" or (cfg.kind == "auto" and cfg.model):
        return YuNetDetector(cfg.model, cfg.min_face, cfg.detect_width, cfg.score_threshold)
    return HaarDetector(cfg.min_face, cfg.detect_width, cfg.scale_factor, cfg.min_neighbors)
