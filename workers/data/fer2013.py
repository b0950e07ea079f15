"""FER2013 in its three common forms: the Kaggle zip, the same tree unpacked, and the
original `fer2013.csv` (emotion,pixels,Usage).

Splits follow the standard protocol: Training, PublicTest (validation), PrivateTest
(test). In the Kaggle layout the split is in the file-name prefix; a copy without the
prefixes gets Training for `train/` and Test for `test/`.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from edge_agent.labels import FER2013_CLASSES
from edge_agent.paths import is_os_metadata
from edge_agent.preprocess import PreprocessSpec, to_model_pixels

from .csvtext import dict_reader, read_text
from .decode import decode_image
from .imageset import ImageSet, ImportError_, ImportReport
from .labels import canonical

SPLITS = ("Training", "PublicTest", "PrivateTest")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _split_of(top: str, filename: str) -> str:
    for s in SPLITS:
        if filename.startswith(s):
            return s
    return "Training" if top.lower() == "train" else "Test"


def _tree_entries(names: list[str]):
    """(path, top, class folder, file name) for images at <top>/<class>/<file>,
    tolerating one enclosing folder (e.g. fer2013/train/happy/x.jpg)."""
    for n in names:
        if n.endswith("/") or not n.lower().endswith(IMAGE_SUFFIXES) or is_os_metadata(n):
            continue
        parts = n.strip("/").split("/")
        if len(parts) < 3 or parts[-3].lower() not in ("train", "test"):
            continue
        yield n, parts[-3], parts[-2], parts[-1]


def _build(items, read_bytes, spec, classes, strict_labels, name) -> ImageSet:
    report = ImportReport()
    items = list(items)
    unknown = sorted({c for _, _, c, _ in items if canonical(c, classes) is None})
    if unknown and strict_labels:
        raise ImportError_(
            f"{name}: unknown class folder(s) {unknown}; expected {list(classes)} "
            "(pass skip_unknown=True to skip them)"
        )
    images, labels, splits = [], [], []
    for path, top, cls, fname in items:
        c = canonical(cls, classes)
        if c is None:
            report.skip("unknown label", path)
            continue
        try:
            img = decode_image(read_bytes(path), spec)
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            report.skip("unreadable file", f"{path}: {e}")
            continue
        if img is None:
            report.skip("corrupt image", path)
            continue
        images.append(img)
        labels.append(classes.index(c))
        splits.append(_split_of(top, fname))
        report.read += 1
    if not images:
        raise ImportError_(f"{name}: no readable images ({report.summary()})")
    return ImageSet(np.stack(images), np.array(labels), tuple(classes), np.array(splits), name="fer2013", report=report)


def read_fer2013_zip(path, spec: PreprocessSpec = PreprocessSpec(), classes=FER2013_CLASSES, strict_labels=True) -> ImageSet:
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ImportError_(f"{path}: not a readable zip file ({e})") from None
    with zf:
        items = sorted(_tree_entries(zf.namelist()))
        if not items:
            raise ImportError_(f"{path}: no images in the train/<class>/ or test/<class>/ layout")
        return _build(items, zf.read, spec, tuple(classes), strict_labels, str(path))


def read_fer2013_folder(path, spec: PreprocessSpec = PreprocessSpec(), classes=FER2013_CLASSES, strict_labels=True) -> ImageSet:
    root = Path(path)
    names = []
    for dirpath, _, files in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        names += [f"{rel.as_posix()}/{f}" for f in files]
    items = sorted(_tree_entries(names))
    if not items:
        raise ImportError_(f"{root}: no images in the train/<class>/ or test/<class>/ layout")
    return _build(items, lambda n: (root / n).read_bytes(), spec, tuple(classes), strict_labels, str(root))


def read_fer2013_csv(path, spec: PreprocessSpec = PreprocessSpec(), classes=FER2013_CLASSES, strict_labels=True) -> ImageSet:
    """The original challenge file: emotion is an index into FER2013's 7 classes,
    pixels are 2304 space-separated gray values, Usage is the split."""
    path = Path(path)
    report = ImportReport()
    images, labels, splits = [], [], []
    try:
        text = read_text(path)
    except OSError as e:
        raise ImportError_(f"{path}: cannot open ({e})") from None
    reader = dict_reader(text)
    missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or ())
    if missing:
        raise ImportError_(f"{path}: missing column(s) {sorted(missing)}; the header must be emotion,pixels,Usage "
                           f"(found {reader.fieldnames})")
    for row_no, row in enumerate(reader, start=2):
        where = f"{path.name}:{row_no}"
        if row.get(None):
            report.skip("extra column(s)", where)
            continue
        try:
            e = int(row["emotion"])
            if not 0 <= e < len(FER2013_CLASSES):
                raise ValueError
        except (TypeError, ValueError):
            if strict_labels:
                raise ImportError_(f"{where}: emotion {row['emotion']!r} is not 0..6") from None
            report.skip("unknown label", where)
            continue
        c = canonical(FER2013_CLASSES[e], classes)
        if c is None:
            report.skip("unknown label", where)
            continue
        try:
            px = np.array((row["pixels"] or "").split(), dtype=np.int64)
        except ValueError:
            px = np.zeros(0)
        side = int(round(np.sqrt(px.size)))
        if px.size == 0 or side * side != px.size:
            report.skip("pixel count not a square image", f"{where} ({px.size} values)")
            continue
        if px.min() < 0 or px.max() > 255:
            report.skip("pixel values outside 0..255", where)
            continue
        images.append(to_model_pixels(px.astype(np.uint8).reshape(side, side), spec))
        labels.append(classes.index(c))
        splits.append((row["Usage"] or "").strip() or "Training")
        report.read += 1
    if not images:
        raise ImportError_(f"{path}: no readable rows ({report.summary()})")
    return ImageSet(np.stack(images), np.array(labels), tuple(classes), np.array(splits), name="fer2013", report=report)
