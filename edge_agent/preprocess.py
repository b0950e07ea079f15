"""The one definition of how a face crop becomes a model input.

Training (workers/) imports this module, so a model sees the same pixels in training
and in the field. A model file carries its `PreprocessSpec` in the ONNX metadata key
`affectwatch.preprocess` (see DESIGN.md).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

try:  # OpenCV is an edge dependency; a pure-numpy fallback keeps the module importable.
    import cv2
except ImportError:  # pragma: no cover - exercised only on minimal installs
    cv2 = None


@dataclass(frozen=True)
class PreprocessSpec:
    size: tuple[int, int] = (48, 48)  # (height, width)
    color: str = "gray"  # "gray" or "rgb"
    scale: float = 255.0
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    def __post_init__(self):
        if self.color not in ("gray", "rgb"):
            raise ValueError(f"preprocess.color must be 'gray' or 'rgb', not {self.color!r}")
        expected = 1 if self.color == "gray" else 3
        if len(self.mean) != expected or len(self.std) != expected:
            raise ValueError(
                f"preprocess.mean and preprocess.std need {expected} value(s) for color {self.color!r}"
            )
        if len(self.size) != 2 or min(self.size) < 8:
            raise ValueError(f"preprocess.size must be [height, width] >= 8, not {list(self.size)}")
        if any(s <= 0 for s in self.std) or self.scale <= 0:
            raise ValueError("preprocess.std and preprocess.scale must be positive")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        unknown = set(d) - {"size", "color", "scale", "mean", "std"}
        if unknown:
            raise ValueError(f"unknown preprocess key(s): {sorted(unknown)}")
        return cls(
            size=tuple(int(v) for v in d.get("size", (48, 48))),
            color=d.get("color", "gray"),
            scale=float(d.get("scale", 255.0)),
            mean=tuple(float(v) for v in d.get("mean", (0.5,))),
            std=tuple(float(v) for v in d.get("std", (0.5,))),
        )

    @classmethod
    def from_json(cls, text: str) -> "PreprocessSpec":
        return cls.from_dict(json.loads(text))


def to_model_pixels(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Colour-convert and resize one uint8 image (gray HxW, or BGR HxWx3 as OpenCV
    reads it) to the model's size. Returns uint8 HxWxC.

    Training caches exactly this output, so augmentation and inference start from the
    same pixels.
    """
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {image.shape}")
    if spec.color == "gray":
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    h, w = spec.size
    if image.shape[:2] != (h, w):
        shrinking = image.shape[0] > h or image.shape[1] > w
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    if image.ndim == 2:
        image = image[:, :, None]
    return np.ascontiguousarray(image)


def normalize(batch: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 or float pixels NHWC in [0, scale] → float32 NCHW model input."""
    x = np.asarray(batch, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    x = (x / np.float32(spec.scale) - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess(images: list[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Face crops (uint8, any size, gray or BGR) → one float32 NCHW batch."""
    if not images:
        h, w = spec.size
        return np.zeros((0, spec.channels, h, w), dtype=np.float32)
    return normalize(np.stack([to_model_pixels(im, spec) for im in images]), spec)
