"""Face detectors as plugins behind one interface: `detect(frame) -> Nx6 array of x, y, w,
h, score, roll` — roll is the eye line's angle in degrees (image coordinates, clockwise
positive) where the detector gives eye landmarks (YuNet), else 0.

A detector is a `FaceDetector` subclass registered under a name (`@register("haar")`)
with an `Options` dataclass: its `[detector.<name>]` config table, each key's default,
help and limit declared on the field (`config.setting`). The config reads and checks
those tables, `make_detector` builds the chosen one, and the field-tech docs' table is
checked against the same declarations (tests/unit/test_edge_detectors.py) — as Frigate's
detector plugins do.

Haar (ships with OpenCV, the default) and YuNet (`cv2.FaceDetectorYN`, when a model file
is configured). Both run on a frame downscaled to `detect_width`: detection cost grows
with the pixel count while faces big enough to classify survive the downscale.
"""
from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from .config import DetectorSection, above, at_least, between, setting

DETECTORS: dict[str, type["FaceDetector"]] = {}


def register(name: str):
    """Class decorator: registers a FaceDetector subclass under `name` (its config table is
    `[detector.<name>]`). Raises ValueError for a name already taken."""
    def decorator(cls: type[FaceDetector]) -> type[FaceDetector]:
        if name in DETECTORS:
            raise ValueError(f"detector {name!r} is already registered")
        cls.name = name
        DETECTORS[name] = cls
        return cls
    return decorator

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


@dataclass
class NoOptions:
    """A detector without options of its own."""


class FaceDetector(abc.ABC):
    """A face detector. Subclasses implement `_detect` on the downscaled frame and are
    built by `make_detector` as `cls(model=..., min_face=..., detect_width=..., **options)`
    (`model` only when `needs_model`)."""
    name: ClassVar[str] = ""  # set by @register
    title: ClassVar[str] = ""  # for messages: "YuNet"
    needs_model: ClassVar[bool] = False  # whether detector.model must name a file
    Options: ClassVar[type] = NoOptions  # its [detector.<name>] table

    def __init__(self, min_face: int = 48, detect_width: int = 320):
        self.min_face = min_face
        self.detect_width = detect_width

    def _scale(self, frame: np.ndarray) -> float:
        w = frame.shape[1]
        return self.detect_width / w if self.detect_width and w > self.detect_width else 1.0

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Faces in a BGR (H, W, 3) or gray (H, W) uint8 frame: float32 (N, 6) of x, y, w,
        h (full-frame pixels), score and roll (degrees), faces under `min_face` dropped."""
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

    @abc.abstractmethod
    def _detect(self, image: np.ndarray, scale: float) -> np.ndarray:
        """Faces in the downscaled `image` (scale = its width / the frame's): (N, 5) x, y,
        w, h, score or (N, 6) with roll, in the downscaled image's pixels."""


@dataclass
class HaarOptions:
    scale_factor: float = setting(1.1, "Haar's image pyramid step; smaller finds more sizes, slower", above(1.0))
    min_neighbors: int = setting(
        5, "overlapping hits a face needs: raise it if posters or patterns are taken for faces", at_least(0))


@register("haar")
class HaarDetector(FaceDetector):
    title = "Haar"
    Options = HaarOptions

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


@dataclass
class YuNetOptions:
    score_threshold: float = setting(
        0.7, "YuNet's minimum face score", between(0.0, 1.0, open_low=True, open_high=True))


@register("yunet")
class YuNetDetector(FaceDetector):
    title = "YuNet"
    needs_model = True
    Options = YuNetOptions

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
    """The detector `cfg` chooses (`cfg.chosen()`: `auto` is YuNet when `cfg.model` is set,
    else Haar), with its `[detector.<name>]` options. Raises OSError when its files (the
    Haar cascade, the YuNet model) are missing or unreadable."""
    cls = DETECTORS[cfg.chosen()]
    extra = {"model": cfg.model} if cls.needs_model else {}
    return cls(min_face=cfg.min_face, detect_width=cfg.detect_width, **extra, **asdict(cfg.options[cls.name]))


def _doc_default(value) -> str:
    if value == "":
        return "—"
    return f"`{value}`" if isinstance(value, str) else repr(value)


def _doc_table(prefix: str, section) -> list[str]:
    from .config import REMOTE_KEYS

    remote = {target for target in REMOTE_KEYS.values()}
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for f in fields(section):
        if "help" not in f.metadata:
            continue
        mark = "*remote*; " if (prefix, f.name) in remote else ""
        limit = f.metadata.get("limit")
        rows.append(f"| `{f.name}` | {_doc_default(getattr(section, f.name))} | {limit.what if limit else '—'} "
                    f"| {mark}{f.metadata['help']} |")
    return rows


def detector_docs() -> str:
    """The field-tech docs' detector tables (markdown), generated from the declarations:
    `[detector]`'s shared keys, then one `[detector.<name>]` table per registered detector
    with options. docs/field-tech.md holds this text verbatim (a unit test checks it)."""
    section = DetectorSection()
    out = ["### `[detector]`", *_doc_table("detector", section)]
    for name, cls in DETECTORS.items():
        if fields(cls.Options):
            out += ["", f"### `[detector.{name}]` ({cls.title} only)", *_doc_table(f"detector.{name}", section.options[name])]
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # python -m edge_agent.detectors: print the docs' tables
    print(detector_docs(), end="")
