"""Folder-per-class data sets such as CK+: <root>/<class>/<image>, optionally with
split folders above them (<root>/<split>/<class>/<image>)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_agent.labels import FER2013_CLASSES
from edge_agent.paths import is_os_metadata
from edge_agent.preprocess import PreprocessSpec

from .decode import decode_image
from .fer2013 import IMAGE_SUFFIXES
from .imageset import ImageSet, ImportError_, ImportReport
from .labels import canonical


def read_class_folders(
    root,
    spec: PreprocessSpec = PreprocessSpec(),
    classes=FER2013_CLASSES,
    strict_labels: bool = True,
    label_map: dict[str, str] | None = None,
    name: str | None = None,
) -> ImageSet:
    """`label_map` renames folders first (e.g. {"contempt": "disgust"}); folders that
    still name no class are an error, or skipped and counted with strict_labels=False."""
    root = Path(root)
    if not root.is_dir():
        raise ImportError_(f"{root}: not a folder")
    classes = tuple(classes)
    label_map = {k.lower(): v for k, v in (label_map or {}).items()}

    def class_of(folder: str):
        return canonical(label_map.get(folder.lower(), folder), classes)

    def folders(d: Path):
        return sorted(p for p in d.iterdir() if p.is_dir() and not is_os_metadata(p.name))

    subdirs = folders(root)
    # Split folders above class folders: no subdir is itself a class but its children are.
    layout = []
    if subdirs and all(class_of(d.name) is None for d in subdirs) and any(
        class_of(c.name) is not None for d in subdirs for c in folders(d)
    ):
        for d in subdirs:
            layout += [(d.name, c) for c in folders(d)]
    else:
        layout = [(None, d) for d in subdirs]
    if not layout:
        raise ImportError_(f"{root}: no class folders found")
    unknown = sorted({d.name for _, d in layout if class_of(d.name) is None})
    if unknown and strict_labels:
        raise ImportError_(
            f"{root}: unknown class folder(s) {unknown}; expected {list(classes)} "
            "(map them with label_map or pass strict_labels=False to skip them)"
        )
    report = ImportReport()
    images, labels, splits = [], [], []
    for split, d in layout:
        c = class_of(d.name)
        files = sorted(p for p in d.rglob("*") if p.is_file() and not is_os_metadata(str(p.relative_to(d))))
        for p in files:
            if c is None:
                report.skip("unknown label", str(p))
                continue
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                report.skip("not an image file", str(p))
                continue
            try:
                img = decode_image(p.read_bytes(), spec)
            except OSError as e:
                report.skip("unreadable file", f"{p}: {e}")
                continue
            if img is None:
                report.skip("corrupt image", str(p))
                continue
            images.append(img)
            labels.append(classes.index(c))
            splits.append(split or "all")
            report.read += 1
    if not images:
        raise ImportError_(f"{root}: no readable images ({report.summary()})")
    has_splits = any(s != "all" for s in splits)
    return ImageSet(
        np.stack(images), np.array(labels), classes, np.array(splits) if has_splits else None,
        name=name or root.name, report=report,
    )
