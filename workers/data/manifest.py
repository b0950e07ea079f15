"""EMOTION-ITCH-style manifests: a CSV with columns path,label,is_worker,subject_id.

`path` is relative to the manifest's folder (or absolute); `label` is a class name
(7 FER2013 classes or the 3 valence classes); `is_worker` is 1/0/true/false. An
optional `split` column is kept.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_agent.labels import VALENCE_CLASSES
from edge_agent.preprocess import PreprocessSpec

from .csvtext import dict_reader, read_text
from .decode import decode_image
from .imageset import ImageSet, ImportError_, ImportReport
from .labels import canonical

REQUIRED = ("path", "label", "is_worker", "subject_id")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


def read_manifest(
    path,
    spec: PreprocessSpec = PreprocessSpec(),
    classes=VALENCE_CLASSES,
    strict_labels: bool = True,
    name: str | None = None,
) -> ImageSet:
    path = Path(path)
    classes = tuple(classes)
    try:
        text = read_text(path)
    except OSError as e:
        raise ImportError_(f"{path}: cannot open ({e})") from None
    report = ImportReport()
    images, labels, workers, subjects, splits = [], [], [], [], []
    reader = dict_reader(text)
    missing = set(REQUIRED) - set(reader.fieldnames or ())
    if missing:
        raise ImportError_(f"{path}: missing column(s) {sorted(missing)}; expected {','.join(REQUIRED)}")
    has_split = "split" in reader.fieldnames
    for row_no, row in enumerate(reader, start=2):
        where = f"{path.name}:{row_no}"
        c = canonical(row["label"] or "", classes)
        if c is None:
            if strict_labels:
                raise ImportError_(f"{where}: unknown label {row['label']!r}; expected one of {list(classes)}")
            report.skip("unknown label", where)
            continue
        w = (row["is_worker"] or "").strip().lower()
        if w not in _TRUE | _FALSE:
            raise ImportError_(f"{where}: is_worker must be 1/0/true/false, not {row['is_worker']!r}")
        if row.get(None):
            report.skip("extra column(s)", where)
            continue
        p = Path((row["path"] or "").replace("\\", "/"))  # a manifest written on Windows
        p = p if p.is_absolute() else path.parent / p
        if not row["path"] or not p.is_file():
            report.skip("missing file", f"{where}: {p}")
            continue
        img = decode_image(p.read_bytes(), spec)
        if img is None:
            report.skip("corrupt image", f"{where}: {p}")
            continue
        images.append(img)
        labels.append(classes.index(c))
        workers.append(w in _TRUE)
        subjects.append((row["subject_id"] or "").strip())
        splits.append((row.get("split") or "").strip() or "all")
        report.read += 1
    if not images:
        raise ImportError_(f"{path}: no readable images ({report.summary()})")
    return ImageSet(
        np.stack(images), np.array(labels), classes, np.array(splits) if has_split else None,
        np.array(workers, dtype=bool), np.array(subjects), name=name or path.stem, report=report,
    )
