"""The embedded SQLite default stores and rolls up a batch exactly as PostgreSQL does."""
import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.support import ROOT, clean_env

from .ingest_scenario import run

pytestmark = pytest.mark.django_db


def test_sqlite_and_postgresql_paths_agree(tmp_path, settings):
    if connection.vendor != "postgresql":
        pytest.skip("compares the embedded SQLite path with PostgreSQL")
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "K_ANONYMITY": 2, "DP_EPSILON": 1e9, "DP_MAX_DETECTIONS": 2}
    base = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=30)
    env = {k: v for k, v in clean_env().items() if k not in ("REDIS_URL", "AFFECTWATCH_TEST_DB")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'embedded.sqlite3'}", AFFECTWATCH_K_ANONYMITY="2",
               AFFECTWATCH_DP_EPSILON="1e9", AFFECTWATCH_DP_MAX_DETECTIONS="2")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    child = subprocess.run([sys.executable, "-m", "tests.integration.ingest_scenario", base.isoformat()], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-3000:]
    on_sqlite = json.loads(child.stdout.strip().splitlines()[-1])
    on_postgresql = json.loads(json.dumps(run(base)))
    assert on_postgresql["answers"][0]["rejected"] == [{"index": 12, "reason": "unknown camera 'cam9'"}]
    assert on_postgresql["site"] and on_postgresql["zone"] and True in on_postgresql["trend"]["suppressed"]
    assert max(t[-1] for t in on_postgresql["tally"]) == 2  # the bound held
    assert len(on_postgresql["site"]) == 90  # every minute of the release, with people or not
    assert on_postgresql["trend_hour"]["t"] and on_postgresql["trend_day"]["t"]  # downsampled on both paths
    assert on_sqlite == on_postgresql
