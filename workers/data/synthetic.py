"""Small made-up face-like data sets in every layout the importers read, for tests and
demos: each class is a distinct, learnable pattern (a bright blob in its own place),
with noise so a network has something to learn rather than memorise."""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import cv2
import numpy as np

from edge_agent.labels import FER2013_CLASSES


def pattern_images(n_per_class: int, num_classes: int, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, size, size) gray images and labels 0..num_classes-1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, labels = [], []
    for c in range(num_classes):
        angle = 2 * np.pi * c / num_classes
        cy, cx = 0.5 + 0.28 * np.sin(angle), 0.5 + 0.28 * np.cos(angle)
        for _ in range(n_per_class):
            jy, jx = rng.normal(0, 0.03, 2)
            blob = np.exp(-(((yy - cy - jy) ** 2 + (xx - cx - jx) ** 2) / 0.015))
            img = 60 + 150 * blob + rng.normal(0, 12, (size, size))
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(c)
    return np.stack(images), np.array(labels)


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _fer_entries(n_per_class: int, seed: int, splits=("Training", "PublicTest", "PrivateTest")):
    """(relative path, png bytes) in the Kaggle layout, n_per_class per class per split."""
    for s_i, split in enumerate(splits):
        top = "train" if split == "Training" else "test"
        imgs, labels = pattern_images(n_per_class, len(FER2013_CLASSES), seed=seed + s_i)
        for i, (img, y) in enumerate(zip(imgs, labels)):
            yield f"{top}/{FER2013_CLASSES[y]}/{split}_{i:05d}.png", _png(img)


def write_fer2013_zip(path, n_per_class: int = 4, seed: int = 0, extra: dict[str, bytes] | None = None) -> Path:
    path = Path(path)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in _fer_entries(n_per_class, seed):
            z.writestr(name, data)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def write_fer2013_folder(root, n_per_class: int = 4, seed: int = 0) -> Path:
    root = Path(root)
    for name, data in _fer_entries(n_per_class, seed):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def write_fer2013_csv(path, n_per_class: int = 4, seed: int = 0, extra_rows: list[dict] | None = None) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["emotion", "pixels", "Usage"])
        w.writeheader()
        for s_i, split in enumerate(("Training", "PublicTest", "PrivateTest")):
            imgs, labels = pattern_images(n_per_class, len(FER2013_CLASSES), seed=seed + s_i)
            for img, y in zip(imgs, labels):
                w.writerow({"emotion": int(y), "pixels": " ".join(map(str, img.ravel())), "Usage": split})
        for row in extra_rows or []:
            w.writerow(row)
    return path


def write_class_folders(root, classes, n_per_class: int = 4, seed: int = 0, size: int = 64, color: bool = True) -> Path:
    """<root>/<class>/<i>.png — colour (BGR) and larger than 48 px, like CK+ crops."""
    root = Path(root)
    imgs, labels = pattern_images(n_per_class, len(classes), size=size, seed=seed)
    for i, (img, y) in enumerate(zip(imgs, labels)):
        d = root / classes[y]
        d.mkdir(parents=True, exist_ok=True)
        out = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if color else img
        (d / f"{i:04d}.png").write_bytes(_png(out))
    return root


def write_manifest(root, classes=("negative", "neutral", "positive"), n_per_class: int = 4, seed: int = 0) -> Path:
    """<root>/manifest.csv with images under <root>/images/; subjects alternate
    between workers and non-workers."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    imgs, labels = pattern_images(n_per_class, len(classes), seed=seed)
    rows = []
    for i, (img, y) in enumerate(zip(imgs, labels)):
        rel = f"images/{i:04d}.png"
        (root / rel).write_bytes(_png(img))
        subject = f"S{i % 6:02d}"
        rows.append({"path": rel, "label": classes[y], "is_worker": int(i % 6 < 3), "subject_id": subject})
    path = root / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "is_worker", "subject_id"])
        w.writeheader()
        w.writerows(rows)
    return path
