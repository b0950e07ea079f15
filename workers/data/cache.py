"""Decode a data set once into a uint8 `.npz` of `to_model_pixels` output.

The key covers the source (path, size, mtime), the preprocessing spec, the importer
and the class list, so a changed file or spec never reads a stale cache.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .imageset import ImageSet

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("AFFECTWATCH_CACHE", Path.home() / ".cache" / "affectwatch"))


def _fingerprint(source: Path) -> list:
    if source.is_file():
        st = source.stat()
        return [str(source.resolve()), st.st_size, st.st_mtime_ns]
    # A folder: its file list, sizes and mtimes.
    entries = []
    for dirpath, _, files in os.walk(source):
        for f in sorted(files):
            st = os.stat(os.path.join(dirpath, f))
            entries.append((os.path.relpath(os.path.join(dirpath, f), source), st.st_size, st.st_mtime_ns))
    digest = hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()
    return [str(source.resolve()), digest]


def cache_key(source, kind: str, spec_json: str, classes) -> str:
    blob = json.dumps([CACHE_VERSION, _fingerprint(Path(source)), kind, spec_json, list(classes)])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached(source, kind, spec, classes, build, cache_dir=None) -> ImageSet:
    """`build()` on a miss; the stored arrays on a hit."""
    if cache_dir is False:
        return build()
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache_dir / f"{Path(source).name}-{kind}-{cache_key(source, kind, spec.to_json(), classes)}.npz"
    if path.exists():
        return ImageSet.load_npz(path)
    data = build()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    data.save_npz(tmp)
    os.replace(tmp, path)  # atomic: a killed run never leaves half a cache
    return data
