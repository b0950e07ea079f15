"""`classify`: faces in image files → CSV rows, with optional annotated copies."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import cv2
import numpy as np

from .classifier import Classifier, crop_face
from .detectors import FaceDetector
from .labels import VALENCE_CLASSES

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
COLUMNS = ["file", "face", "x", "y", "w", "h", "label", "valence", "confidence", "valence_confidence"]
COLORS = {"negative": (60, 60, 230), "neutral": (200, 200, 200), "positive": (80, 200, 80)}


def iter_images(paths) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            print(f"warning: {p}: no such file or folder", file=sys.stderr)
    return out


def classify_image(image: np.ndarray, detector: FaceDetector, clf: Classifier, margin: float = 0.1,
                   clahe: float = 0.0, whole_if_none: bool = False) -> list[dict]:
    boxes = detector.detect(image)[:, :4]
    if len(boxes) == 0 and whole_if_none:
        # A face crop already (a data set image): the whole image is the face.
        boxes = np.array([[0, 0, image.shape[1], image.shape[0]]], dtype=np.float32)
        margin = 0.0
    order = np.lexsort((boxes[:, 1], boxes[:, 0])) if len(boxes) else []
    boxes = boxes[order] if len(boxes) else boxes
    probs = clf.classify([crop_face(image, b, margin) for b in boxes], clahe)
    rows = []
    if not len(probs):
        return rows
    for i, (b, k, kp, v, vp) in enumerate(zip(boxes, *clf.decide(probs))):
        rows.append({"face": i, "x": int(b[0]), "y": int(b[1]), "w": int(b[2]), "h": int(b[3]),
                     "label": clf.labels[k], "valence": VALENCE_CLASSES[v], "confidence": round(float(kp), 4),
                     "valence_confidence": round(float(vp), 4)})
    return rows


def annotate(image: np.ndarray, rows: list[dict]) -> np.ndarray:
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for r in rows:
        color = COLORS[r["valence"]]
        cv2.rectangle(out, (r["x"], r["y"]), (r["x"] + r["w"], r["y"] + r["h"]), color, 2)
        text = f"{r['label']} {r['confidence']:.2f}"
        cv2.putText(out, text, (r["x"], max(12, r["y"] - 5)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
    return out


def classify_paths(paths, detector: FaceDetector, clf: Classifier, out, margin=0.1, clahe=0.0,
                   annotate_dir: str | Path | None = None, whole_if_none: bool = False) -> int:
    """Writes CSV rows to the file object `out`; returns the number of faces."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    faces = 0
    for path in iter_images(paths):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"warning: {path}: not an image OpenCV can read", file=sys.stderr)
            continue
        rows = classify_image(image, detector, clf, margin, clahe, whole_if_none)
        for r in rows:
            writer.writerow({"file": str(path), **r})
        faces += len(rows)
        if annotate_dir:
            target = Path(annotate_dir) / f"{path.stem}.annotated{path.suffix if path.suffix.lower() != '.pgm' else '.png'}"
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), annotate(image, rows))
    return faces
