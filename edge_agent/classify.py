"""`classify`: faces in image files → CSV rows, with optional annotated copies.

Every input file is accounted for: one row per face found, or one row with status
`no face` or `unreadable` (and the reason) and empty face columns, and a closing
summary that counts them."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .classifier import Classifier, crop_face
from .detectors import FaceDetector
from .labels import VALENCE_CLASSES
from .paths import is_os_metadata
from .spreadsheet import SafeDictWriter

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".gif"}
COLUMNS = ["file", "status", "face", "x", "y", "w", "h", "label", "valence", "confidence", "valence_confidence"]
FACES, NO_FACE, UNREADABLE = "faces", "no face", "unreadable"
COLORS = {"negative": (60, 60, 230), "neutral": (200, 200, 200), "positive": (80, 200, 80)}


def iter_images(paths) -> tuple[list[Path], int]:
    """(the image files named or found in the folders named, the number of other files
    in those folders). A named path that does not exist is kept, so it gets its row."""
    out, other = [], 0
    for p in map(Path, paths):
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_file():
                    if q.suffix.lower() in IMAGE_SUFFIXES and not is_os_metadata(str(q.relative_to(p))):
                        out.append(q)
                    else:
                        other += 1
        else:
            out.append(p)
    return out, other


def read_image(path: Path) -> tuple[np.ndarray | None, str]:
    """(BGR image, "") or (None, why not). GIFs (which cv2.imread cannot open) are read
    through their first frame; a truncated file is unreadable, not half an image."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    if path.suffix.lower() == ".gif":
        cap = cv2.VideoCapture(str(path))
        ok, image = cap.read()
        cap.release()
        return (image, "") if ok else (None, "not a GIF OpenCV can read")
    if path.suffix.lower() in (".jpg", ".jpeg") and data.tobytes().rfind(b"\xff\xd9") == -1:
        # No end-of-image marker anywhere (data after it — a Motion Photo's video — is fine).
        return None, "truncated JPEG (no end-of-image marker)"
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if len(data) else None
    return (image, "") if image is not None else (None, "not an image OpenCV can read")


@dataclass
class ClassifySummary:
    """What a `classify_paths` run did, per file status."""

    files: Counter = field(default_factory=Counter)
    faces: int = 0
    other_files: int = 0  # in the folders, not image files (by suffix); no rows

    def __str__(self) -> str:
        n = sum(self.files.values())
        return (f"{n} image file(s): {self.files[FACES]} with faces ({self.faces} face(s)), "
                f"{self.files[NO_FACE]} with no face, {self.files[UNREADABLE]} unreadable; "
                f"{self.other_files} other file(s) in the folders ignored")


def classify_image(image: np.ndarray, detector: FaceDetector, clf: Classifier, margin: float = 0.1,
                   clahe: float = 0.0, whole_if_none: bool = False, align: bool = True) -> list[dict]:
    """One row per face (left to right, then top to bottom). align: level the eyes of
    each crop where the detector gives eye landmarks (`crop_face`'s roll)."""
    dets = detector.detect(image)
    if len(dets) == 0 and whole_if_none:
        # A face crop already (a data set image): the whole image is the face.
        dets = np.array([[0, 0, image.shape[1], image.shape[0], 1.0, 0.0]], dtype=np.float32)
        margin = 0.0
    order = np.lexsort((dets[:, 1], dets[:, 0])) if len(dets) else []
    dets = dets[order] if len(dets) else dets
    boxes = dets[:, :4]
    probs = clf.classify([crop_face(image, d[:4], margin, float(d[5]) if align else 0.0) for d in dets], clahe)
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
                   annotate_dir: str | Path | None = None, whole_if_none: bool = False) -> ClassifySummary:
    """Writes CSV rows to the file object `out` — one per face, or one per file without
    a face or that cannot be read — and returns the summary."""
    writer = SafeDictWriter(out, fieldnames=COLUMNS)  # a file named '=cmd|...' stays text
    writer.writeheader()
    images, other = iter_images(paths)
    summary = ClassifySummary(other_files=other)
    for path in images:
        image, why = read_image(path)
        if image is None:
            writer.writerow({"file": str(path), "status": f"{UNREADABLE}: {why}"})
            summary.files[UNREADABLE] += 1
            continue
        rows = classify_image(image, detector, clf, margin, clahe, whole_if_none)
        for r in rows:
            writer.writerow({"file": str(path), "status": FACES, **r})
        if not rows:
            writer.writerow({"file": str(path), "status": NO_FACE})
        summary.files[FACES if rows else NO_FACE] += 1
        summary.faces += len(rows)
        if annotate_dir:
            target = Path(annotate_dir) / f"{path.stem}.annotated{path.suffix if path.suffix.lower() not in ('.pgm', '.gif') else '.png'}"
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), annotate(image, rows))
    return summary
