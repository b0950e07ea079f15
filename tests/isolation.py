"""A pytest plugin loaded before Django (`-p tests.isolation` in pyproject's addopts):
tests never read or write the checkout's var/, where a running `make run` keeps its
database, media, secret key and broker file.

The run gets a temporary AFFECTWATCH_VAR_DIR (tests/run.py makes and removes one; a
plain `pytest` gets one here), and the session fails if the checkout's var/ changed
while it ran."""
import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKOUT_VAR = ROOT / "var"

os.environ.setdefault("AFFECTWATCH_VAR_DIR", tempfile.mkdtemp(prefix="affectwatch-test-var-"))


def snapshot(folder: Path) -> dict:
    """{relative path: (size, mtime ns)} of every file below `folder`."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else {}


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


_BEFORE = pytest.StashKey[dict]()
