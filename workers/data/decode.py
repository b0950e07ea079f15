"""Bytes → `to_model_pixels` output, the one place images are decoded."""
from __future__ import annotations

import cv2
import numpy as np

from edge_agent.preprocess import PreprocessSpec, to_model_pixels


def decode_image(data: bytes, spec: PreprocessSpec) -> np.ndarray | None:
    """None when the bytes are not a readable image."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        return None
    flag = cv2.IMREAD_GRAYSCALE if spec.color == "gray" else cv2.IMREAD_COLOR
    img = cv2.imdecode(buf, flag)
    if img is None:
        return None
    return to_model_pixels(img, spec)


def empty_images(spec: PreprocessSpec) -> np.ndarray:
    h, w = spec.size
    return np.zeros((0, h, w, spec.channels), dtype=np.uint8)
