"""A pytest plugin loaded before Django (`-p tests.isolation` in pyproject's addopts):
tests never read or write the checkout's var/, where a running `make run` keeps its
database, media, secret key and broker file.

The run gets a temporary AFFECTWATCH_VAR_DIR (tests/run.py makes and removes one; a
plain `pytest` gets one here), and the session fails if a file of the checkout's var/
appeared, disappeared or changed while it ran — except that the files a running demo
itself keeps writing (its SQLite database and journals, the beat schedule, logs) are
held only to existing before and after."""
import fnmatch
import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKOUT_VAR = ROOT / "var"

if "AFFECTWATCH_VAR_DIR" not in os.environ:  # tests/run.py sets (and removes) its own
    os.environ["AFFECTWATCH_VAR_DIR"] = _OWN = tempfile.mkdtemp(prefix="affectwatch-test-var-")
else:
    _OWN = None


LIVE = ("*.sqlite3", "*.sqlite3-*", "celerybeat-schedule*", "*.log")  # what a running demo writes


def snapshot(folder: Path) -> dict:
    """{relative path: (size, mtime ns), or None for a demo's live files} of every file
    below `folder`."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): None if any(fnmatch.fnmatch(p.name, g) for g in LIVE)
            else (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def pytest_sessionstart(session):
    session.config.stash[_BEFORE] = snapshot(CHECKOUT_VAR)


def pytest_sessionfinish(session, exitstatus):
    before = session.config.stash.get(_BEFORE, None)
    if before is None:
        return
    after = snapshot(CHECKOUT_VAR)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        print(f"\nthe test run changed the checkout's var/ (a demo's files): {changed[:10]}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config):
    if _OWN:
        import shutil

        shutil.rmtree(_OWN, ignore_errors=True)


_BEFORE = pytest.StashKey[dict]()
