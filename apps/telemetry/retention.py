"""What expires, and how: raw data after EVENT_RETENTION_DAYS, released minute rollups
after MINUTE_ROLLUP_RETENTION_DAYS; hour and day rollups are kept.

On PostgreSQL the raw events and track tallies are dropped a day partition at a time
(`partitions.py`); the embedded SQLite default deletes rows."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import partitions
from .models import ROLLUPS, EmotionEvent, IngestBatch, RawMinute, RollupTrack


def purge_expired(now: datetime | None = None) -> dict:
    """Deletes what is past its retention. Returns counts: {"event_partitions",
    "events", "minute_rollups"} (events: rows deleted one by one — on PostgreSQL only
    those outside a day partition)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.AFFECTWATCH["EVENT_RETENTION_DAYS"])
    out = {"event_partitions": 0, "events": 0}
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                dropped = partitions.purge(cursor, cutoff)
            out.update(event_partitions=dropped["partitions"], events=dropped["rows"])
        else:
            out["events"], _ = EmotionEvent.objects.filter(ts__lt=cutoff).delete()
            RollupTrack.objects.filter(minute__lt=cutoff).delete()
    RawMinute.objects.filter(minute__lt=cutoff).delete()
    IngestBatch.objects.filter(received_at__lt=cutoff).delete()
    minutes_cutoff = now - timedelta(days=settings.AFFECTWATCH["MINUTE_ROLLUP_RETENTION_DAYS"])
    out["minute_rollups"] = sum(levels["minute"].objects.filter(minute__lt=minutes_cutoff).delete()[0]
                                for levels in ROLLUPS.values())
    return out


def ensure_partitions(now: datetime | None = None) -> int:
    """Creates the raw tables' day partitions from INGEST_MAX_PAST ago to
    PARTITION_AHEAD_DAYS ahead (PostgreSQL; 0 elsewhere). Returns how many were created."""
    if connection.vendor != "postgresql":
        return 0
    now = now or timezone.now()
    first = (now - settings.AFFECTWATCH["INGEST_MAX_PAST"]).date()
    last = (now + timedelta(days=settings.AFFECTWATCH["PARTITION_AHEAD_DAYS"])).date()
    with transaction.atomic(), connection.cursor() as cursor:
        return partitions.make_partitions(cursor, first, last)
