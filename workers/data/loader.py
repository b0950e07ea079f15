"""One entry point: a path (and optionally a kind) → an `ImageSet`, cached."""
from __future__ import annotations

import zipfile
from pathlib import Path

from edge_agent.labels import FER2013_CLASSES, VALENCE_CLASSES
from edge_agent.preprocess import PreprocessSpec

from .cache import cached
from .csvtext import dict_reader, read_text
from .fer2013 import read_fer2013_csv, read_fer2013_folder, read_fer2013_zip
from .folders import read_class_folders
from .imageset import ImageSet, ImportError_
from .manifest import REQUIRED, read_manifest

KINDS = ("fer2013-zip", "fer2013-folder", "fer2013-csv", "folders", "manifest")


def detect_kind(source) -> str:
    p = Path(source)
    if not p.exists():
        raise ImportError_(f"{p}: no such file or folder")
    if p.is_dir():
        subs = {d.name.lower() for d in p.iterdir() if d.is_dir()}
        return "fer2013-folder" if {"train", "test"} & subs else "folders"
    if zipfile.is_zipfile(p):
        return "fer2013-zip"
    if p.suffix.lower() == ".csv":
        header = dict_reader(read_text(p, limit=65536)).fieldnames or []  # the header, not 300 MB
        if {"emotion", "pixels", "Usage"} <= set(header):
            return "fer2013-csv"
        if set(REQUIRED) <= set(header):
            return "manifest"
        raise ImportError_(f"{p}: a CSV needs emotion,pixels,Usage (FER2013) or {','.join(REQUIRED)} (manifest)")
    raise ImportError_(f"{p}: cannot tell which importer reads this (a zip, a folder or a CSV)")


def load_dataset(
    source,
    kind: str = "auto",
    spec: PreprocessSpec = PreprocessSpec(),
    classes=None,
    strict_labels: bool = True,
    cache_dir=None,
) -> ImageSet:
    """`cache_dir=False` skips the cache (tests, one-off reads)."""
    kind = detect_kind(source) if kind == "auto" else kind
    if kind not in KINDS:
        raise ImportError_(f"unknown data set kind {kind!r}; choose from {', '.join(KINDS)}")
    if classes is None:
        classes = VALENCE_CLASSES if kind == "manifest" else FER2013_CLASSES
    readers = {
        "fer2013-zip": read_fer2013_zip,
        "fer2013-folder": read_fer2013_folder,
        "fer2013-csv": read_fer2013_csv,
        "folders": read_class_folders,
        "manifest": read_manifest,
    }
    reader = readers[kind]

    def build() -> ImageSet:
        return reader(source, spec=spec, classes=tuple(classes), strict_labels=strict_labels)

    return cached(source, kind, spec, classes, build, cache_dir=cache_dir)
