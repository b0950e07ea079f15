"""Synthetic scenes for tests, benches and demos: faces from a real public-domain
photograph composited onto a moving, textured background, written as a video a camera
source can play."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np


# The face box of scikit-image's `astronaut` sample (x, y, w, h in its 512x512 frame),
# as OpenCV's frontal Haar cascade finds it.
ASTRONAUT_FACE = (174, 64, 98, 98)


def photo_faces(n: int, seed: int = 0, size: int = 48) -> list[np.ndarray]:
    """`n` gray `size`x`size` face images made from one real photograph, scikit-image's
    `astronaut` sample (Eileen Collins, NASA; public domain), varied per face by mirror,
    a small rotation and zoom, and gamma, so a scene has several distinct faces that a
    detector finds and a tracker must keep apart. Needs scikit-image (the `dev` extra);
    ImportError otherwise."""
    from skimage.data import astronaut

    gray = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    x, y, w, h = ASTRONAUT_FACE
    cx, cy = x + w / 2, y + h / 2
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        angle = float(rng.uniform(-8, 8))
        zoom = float(rng.uniform(0.95, 1.08))
        # Rotate and scale about the face centre, then move that centre to the middle.
        m = cv2.getRotationMatrix2D((cx, cy), angle, zoom * size / (w * 1.1))
        m[:, 2] += (size / 2 - cx, size / 2 - cy)
        face = cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
        gamma = float(rng.uniform(0.7, 1.4))
        face = np.clip(255.0 * (face / 255.0) ** gamma, 0, 255).astype(np.uint8)
        out.append(face[:, ::-1].copy() if i % 2 else face)
    return out


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A BGR background with structure at several scales (what a detector sees in a plant)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    for cell, weight in ((64, 0.5), (16, 0.3), (4, 0.2)):
        small = rng.random((height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        img += weight * cv2.resize(small, (width + 2 * cell, height + 2 * cell),
                                   interpolation=cv2.INTER_CUBIC)[cell:cell + height, cell:cell + width]
    img = (img - img.min()) / (img.max() - img.min() + 1e-6)
    img = (60 + img * 140).astype(np.uint8)
    for _ in range(12):  # a few hard edges: shelves, pipes
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(20, 200)), y + int(rng.integers(5, 30))),
                      tuple(int(v) for v in rng.integers(40, 220, 3)), -1)
    return img


class Scene:
    """`n` faces moving slowly over a panning background, as a 640x480 BGR frame source."""

    def __init__(self, faces: list[np.ndarray], width: int = 640, height: int = 480, face_size: int = 140,
                 seed: int = 0, speed: float = 1.0):
        self.width, self.height, self.face_size = width, height, face_size
        self.bg = texture(width + 200, height + 120, seed)
        self.speed = speed
        rng = np.random.default_rng(seed + 1)
        self.faces = [cv2.cvtColor(cv2.resize(f, (face_size, face_size), interpolation=cv2.INTER_CUBIC),
                                   cv2.COLOR_GRAY2BGR) if f.ndim == 2 else
                      cv2.resize(f, (face_size, face_size), interpolation=cv2.INTER_CUBIC) for f in faces]
        n = len(self.faces)
        cols = max(1, math.ceil(math.sqrt(n)))
        rows = max(1, math.ceil(n / cols))
        cw, ch = width / cols, height / rows
        self.cells = []
        for i in range(n):
            cx, cy = (i % cols + 0.5) * cw, (i // cols + 0.5) * ch
            ax = max(0.0, (cw - face_size) / 2 - 4)
            ay = max(0.0, (ch - face_size) / 2 - 4)
            self.cells.append((cx, cy, ax, ay, rng.uniform(0, 2 * math.pi), rng.uniform(0.6, 1.2)))

    def boxes(self, t: int) -> list[tuple[int, int, int, int]]:
        """Where each face is in frame `t` (x, y, w, h)."""
        out = []
        s = self.face_size
        for cx, cy, ax, ay, phase, freq in self.cells:
            a = t * 0.03 * self.speed * freq + phase
            x = int(round(cx + ax * math.sin(a) - s / 2))
            y = int(round(cy + ay * math.sin(1.3 * a) - s / 2))
            out.append((min(max(x, 0), self.width - s), min(max(y, 0), self.height - s), s, s))
        return out

    def frame(self, t: int) -> np.ndarray:
        ox = int(100 + 90 * math.sin(t * 0.01 * self.speed))
        oy = int(60 + 50 * math.sin(t * 0.007 * self.speed))
        img = self.bg[oy:oy + self.height, ox:ox + self.width].copy()
        for face, (x, y, w, h) in zip(self.faces, self.boxes(t)):
            img[y:y + h, x:x + w] = face
        return img


def write_video(path: str | Path, scene: Scene, frames: int, fps: float = 30.0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix.lower() == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (scene.width, scene.height))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path}")
    for t in range(frames):
        writer.write(scene.frame(t))
    writer.release()
    return path
