"""A test run keeps to its own folder: nothing of the checkout's var/ (a running demo's
database, media, secret key, broker file) is read or written."""
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_run_keeps_its_files_in_a_folder_of_its_own():
    var = Path(settings.VAR_DIR).resolve()
    assert not var.is_relative_to((ROOT / "var").resolve())
    for path in (settings.MEDIA_ROOT, settings.CELERY_BEAT_SCHEDULE_FILENAME):
        assert Path(path).resolve().is_relative_to(var), path
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        assert Path(db["TEST"]["NAME"]).resolve().is_relative_to(var)
