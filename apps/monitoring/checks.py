"""`manage.py check --deploy` for /metrics: a production deployment has a scraper token
and a multiprocess folder its processes can write."""
import os

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def metrics_deploy(app_configs=None, **kwargs):
    """Warnings (never errors) about the Prometheus endpoint in a production deployment."""
    problems = []
    if not settings.AFFECTWATCH["METRICS_TOKEN_SHA256"]:
        problems.append(checks.Warning(
            "AFFECTWATCH_METRICS_TOKEN is not set: /metrics answers superusers' sessions only, so Prometheus cannot scrape it.",
            hint="Set AFFECTWATCH_METRICS_TOKEN to a random string of at least 32 characters (docs/operations.md).",
            id="affectwatch.monitoring.W001"))
    folder = settings.METRICS_DIR
    if not (folder.is_dir() and os.access(folder, os.W_OK)):
        problems.append(checks.Warning(
            f"The Prometheus multiprocess folder {folder} is not a writable directory: counters would fail.",
            hint="Set PROMETHEUS_MULTIPROC_DIR to a folder every web and worker process can write.",
            id="affectwatch.monitoring.W002"))
    return problems
