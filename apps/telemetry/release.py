"""Releasing closed minutes: raw cells in, noisy published rollups out.

Which cells are released, and when, does not depend on anyone's presence: every minute
of every non-revoked device, from its enrolment on, up to RELEASE_DELAY before now and
never past its last heartbeat; the minutes of an outage are released RELEASE_CATCH_UP
after the board is back, when its outbox has had time to drain. A minute without detections is released as
zeros plus noise, exactly like one with — otherwise the existence of a row would say
that someone was there. Each cell is released once; detections that arrive after their
minute was released stay in the raw tables and are never published, since changing a
released number is what a differencing attack reads.

The zone and site rollups are sums of the released device cells, and the hour and day
rollups of each site are recomputed for the span just released (`downsample.py`), so
every coarser number is post-processing of the noisy cells (see `privacy.py`)."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.sites.models import Device, Site

from .downsample import downsample
from .live import publish_minutes
from .models import DeviceRelease, MinuteRollup, RawMinute, SiteMinuteRollup, ZoneMinuteRollup
from .privacy import CELL, mechanism

log = logging.getLogger(__name__)
MINUTE = timedelta(minutes=1)
#: At most this many minutes of one device per run (a board back after a week offline
#: is caught up over a few runs rather than in one long transaction).
MAX_MINUTES_PER_RUN = 24 * 60


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def release_due(now: datetime | None = None) -> dict:
    """Releases every device's closed minutes. Returns {"devices": n, "cells": n}.

    Safe to run concurrently (each device's mark is locked, skipped when busy) and
    after a crash (a device's cells and its mark move in one transaction)."""
    now = now or timezone.now()
    horizon = floor_minute(now - settings.AFFECTWATCH["RELEASE_DELAY"])
    spans = {}  # site → (first minute released, end of the last)
    stats = {"devices": 0, "cells": 0}
    catch_up = settings.AFFECTWATCH["RELEASE_CATCH_UP"]
    oldest = floor_minute(now - timedelta(days=settings.AFFECTWATCH["MINUTE_ROLLUP_RETENTION_DAYS"]))
    devices = Device.objects.filter(revoked_at__isnull=True, last_seen_at__isnull=False).only(
        "id", "site_id", "zone_id", "enrolled_at", "last_seen_at", "offline_from", "back_online_at")
    for device in devices:
        upto = min(horizon, floor_minute(device.last_seen_at))
        if device.back_online_at and now < device.back_online_at + catch_up:
            upto = min(upto, floor_minute(device.offline_from))
        try:
            with transaction.atomic():
                mark = _lock_mark(device)
                if mark is None:
                    continue
                # Minutes past the minute rollups' retention are not released: their
                # neighbours' rows are gone, so they could only publish a remnant.
                start = max(mark.until, oldest)
                end = min(upto, start + MAX_MINUTES_PER_RUN * MINUTE)
                if end <= start:
                    continue
                n = _release_device(device, start, end)
                mark.until = end
                mark.save(update_fields=["until"])
        except IntegrityError as exc:  # SQLite has no row locks: a concurrent run released these first
            log.info("device %s: release skipped this run (%s)", device.id, exc)
            continue
        stats["devices"] += 1
        stats["cells"] += n
        first, last = spans.get(device.site_id, (start, end))
        spans[device.site_id] = (min(first, start), max(last, end))
    for site_id, (first, end) in spans.items():
        try:
            with transaction.atomic():
                # One downsampling of a site at a time, each reading after its own release
                # committed: the last to write has read every committed minute. From an
                # hour earlier: a run that died between a release and its downsampling
                # left that hour stale, and the next run (20 s later) redoes it.
                site = Site.objects.select_for_update().only("id", "timezone").get(id=site_id)
                downsample(site, first - timedelta(hours=1), end)
        except Exception:  # the minutes are published; the next run redoes these hours
            log.exception("site %s: downsampling %s–%s failed", site_id, first, end)
        publish_minutes(site_id, first, end - MINUTE)
    return stats


def _lock_mark(device) -> DeviceRelease | None:
    """The device's release mark, locked for this transaction; None when another run holds
    it. A board's first mark is its enrolment, or INGEST_MAX_PAST ago if that is later
    (no event can be older)."""
    first = max(device.enrolled_at, timezone.now() - settings.AFFECTWATCH["INGEST_MAX_PAST"])
    DeviceRelease.objects.get_or_create(device=device, defaults={"until": floor_minute(first)})
    qs = DeviceRelease.objects.filter(device=device)
    if connection.features.has_select_for_update_skip_locked:
        qs = qs.select_for_update(skip_locked=True)
    return qs.first()


def _release_device(device, start: datetime, end: datetime) -> int:
    """Noises and publishes the device's minutes in [start, end). Returns the cell count."""
    minutes = [start + i * MINUTE for i in range(int((end - start) / MINUTE))]
    raw = {r[0]: r[1:] for r in RawMinute.objects.filter(device=device, minute__gte=start, minute__lt=end)
           .values_list("minute", *CELL)}
    cells = np.array([raw.get(m, (0, 0, 0, 0)) for m in minutes], dtype=np.int64).reshape(-1, len(CELL))
    noisy = mechanism().release(cells)
    MinuteRollup.objects.bulk_create(
        [MinuteRollup(device_id=device.id, site_id=device.site_id, zone_id=device.zone_id, minute=m,
                      **dict(zip(CELL, map(int, row)))) for m, row in zip(minutes, noisy)],
        batch_size=1000)
    if device.zone_id:
        _add(ZoneMinuteRollup, {"zone_id": device.zone_id, "site_id": device.site_id}, "zone_id", minutes, noisy)
    _add(SiteMinuteRollup, {"site_id": device.site_id}, "site_id", minutes, noisy)
    return len(minutes)


def _add(model, keys: dict, conflict: str, minutes, noisy) -> None:
    """Adds released cells to a zone's or site's per-minute sums (atomic increments)."""
    q = connection.ops.quote_name
    table = q(model._meta.db_table)
    columns = [*keys, "minute", *CELL, "cells"]
    increments = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in (*CELL, "cells"))
    adapt = connection.ops.adapt_datetimefield_value
    rows = [(*keys.values(), adapt(m), *map(int, row), 1) for m, row in zip(minutes, noisy)]
    with connection.cursor() as cursor:
        for i in range(0, len(rows), 500):
            chunk = rows[i : i + 500]
            placeholders = ", ".join("(" + ", ".join(["%s"] * len(columns)) + ")" for _ in chunk)
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES {placeholders} "
                f"ON CONFLICT ({conflict}, minute) DO UPDATE SET {increments}",
                [v for row in chunk for v in row])
