"""Small EMOTION-ITCH-style data sets made on the fly from FER2013 test images
(`../shared/datasets/fer2013/fer2013.zip`), grouped to 3 classes, with subjects of
which about half are workers. Nothing is copied into the repository."""
import csv
import io
import zipfile
from pathlib import Path

FER_ZIP = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "fer2013" / "fer2013.zip"
GROUPS = {"negative": ("angry", "fear", "sad", "disgust"), "neutral": ("neutral",), "positive": ("happy", "surprise")}


def fer_images(per_class: int, offset: int = 0) -> dict[str, list[bytes]]:
    """`per_class` FER2013 PrivateTest images per valence class."""
    out = {label: [] for label in GROUPS}
    with zipfile.ZipFile(FER_ZIP) as z:
        names = sorted(n for n in z.namelist() if n.startswith("test/") and "PrivateTest_" in n)
        for label, classes in GROUPS.items():
            picked = [n for n in names if n.split("/")[1] in classes][offset:offset + per_class * 3]
            # interleave the FER classes of a group so each group has a mix
            for n in picked:
                if len(out[label]) == per_class:
                    break
                out[label].append(z.read(n))
    return out


def itch_zip(n: int = 60, subjects: int = 10, workers: int = 5, consent: bool = True, offset: int = 0,
             extra_files: dict | None = None, extra_rows: list | None = None) -> bytes:
    """A zip with manifest.csv, subjects.csv (when `consent`) and `n` images in 3 classes.
    Subject S01..S{workers} are workers."""
    per = n // 3
    imgs = fer_images(per, offset)
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
