"""Small EMOTION-ITCH-style data sets made on the fly: 48x48 JPEG images of a learnable
pattern per valence class (workers.data.synthetic.pattern_images), with subjects of
which about half are workers. Nothing outside the repository is read."""
import csv
import io
import zipfile

import cv2

from edge_agent.labels import VALENCE_CLASSES
from workers.data.synthetic import pattern_images

GROUPS = VALENCE_CLASSES


def class_images(per_class: int, offset: int = 0) -> dict[str, list[bytes]]:
    """`per_class` JPEG images per valence class; another `offset` gives other images."""
    images, labels = pattern_images(per_class, len(GROUPS), seed=1000 + offset)
    out = {label: [] for label in GROUPS}
    for img, c in zip(images, labels):
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        out[GROUPS[c]].append(buf.tobytes())
    return out


def itch_zip(n: int = 60, subjects: int = 10, workers: int = 5, consent: bool = True, offset: int = 0,
             extra_files: dict | None = None, extra_rows: list | None = None) -> bytes:
    """A zip with manifest.csv, subjects.csv (when `consent`) and `n` images in 3 classes.
    Subject S01..S{workers} are workers."""
    per = n // 3
    imgs = class_images(per, offset)
    rows, files = [], {}
    i = 0
    for label in GROUPS:
        for data in imgs[label]:
            s = i % subjects + 1
            path = f"images/{label}-{i:03d}.jpg"
            files[path] = data
            rows.append([path, label, int(s <= workers), f"S{s:02d}"])
            i += 1
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        m = io.StringIO()
        w = csv.writer(m)
        w.writerow(["path", "label", "is_worker", "subject_id"])
        w.writerows(rows + (extra_rows or []))
        z.writestr("manifest.csv", m.getvalue())
        if consent:
            s_csv = io.StringIO()
            w = csv.writer(s_csv)
            w.writerow(["subject_id", "is_worker", "consent_given_at", "consent_scope"])
            for s in range(1, subjects + 1):
                w.writerow([f"S{s:02d}", int(s <= workers), "2026-10-01", "face images for model training"])
            z.writestr("subjects.csv", s_csv.getvalue())
        for path, data in files.items():
            z.writestr(path, data)
        for path, data in (extra_files or {}).items():
            z.writestr(path, data)
    return buf.getvalue()
