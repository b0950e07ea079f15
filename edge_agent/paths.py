"""Which files in a folder or archive are data, and which are what operating systems and
tools leave beside it. One rule for every importer, the dataset upload and `classify`."""
from __future__ import annotations

from pathlib import PurePosixPath

# What operating systems and tools leave beside data: macOS (.DS_Store, ._AppleDouble
# files, __MACOSX/), Windows (Thumbs.db, desktop.ini), Jupyter (.ipynb_checkpoints/),
# version control; any name starting with a dot.
OS_METADATA_NAMES = {"__macosx", "thumbs.db", "desktop.ini", "$recycle.bin"}


def is_os_metadata(path: str) -> bool:
    """True when any part of `path` (either slash) is hidden or OS / tool metadata;
    such entries are ignored by every importer, never counted as data."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    return any(p.startswith(".") and p not in (".", "..") or p.lower() in OS_METADATA_NAMES for p in parts)
