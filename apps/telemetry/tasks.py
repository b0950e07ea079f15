from celery import shared_task

from .release import release_due
from .retention import ensure_partitions, purge_expired


@shared_task
def release_minutes():
    """Every 20 s (beat): noise and publish every device's closed minutes."""
    return release_due()


@shared_task
def purge_expired_events():
    """Hourly (beat): raw data past EVENT_RETENTION_DAYS and minute rollups past
    MINUTE_ROLLUP_RETENTION_DAYS go (`retention.purge_expired`)."""
    return purge_expired()


@shared_task
def make_partitions():
    """Hourly (beat): the coming days' partitions of the raw tables (PostgreSQL)."""
    return ensure_partitions()
