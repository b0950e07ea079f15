"""Hour and day rollups: the released minutes of each site, zone and device, summed.

A year-long trend at day buckets reads 365 rows instead of 525,600 minutes, and minute
rows can expire (MINUTE_ROLLUP_RETENTION_DAYS) while hours and days are kept forever.

Each coarser row is *recomputed* from the level below — never incremented — because its
`tracks` is the busiest minute's distinct tracks (a maximum of noisy sums, which an
increment cannot maintain: a later device's noise may lower the busiest minute). The
release (`release.release_due`) calls `downsample` for the span it has just published,
so ingest never pays for it; recomputing an hour reads its 60 minute rows per scope.

Every number here is a sum or maximum of released noisy cells: post-processing, so the
hour and day rows reveal nothing the minute rows did not (`privacy.py`), and a trend
read from them equals the same trend computed from the minutes (tested).

Buckets are the site's local hours and days (`Site.timezone`, as the trends always
bucketed); a site whose time zone changes keeps its earlier days in the old zone."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from .models import ROLLUPS
from .privacy import CELL

SCOPE_KEYS = {"site": ("site_id",), "zone": ("site_id", "zone_id"), "device": ("site_id", "device_id")}


def local_floor(t: datetime, level: str, tz: ZoneInfo) -> datetime:
    """The start of the local hour or day holding `t` (aware), as a UTC datetime. In UTC
    because Python compares two times of one zone by their wall clocks, which would make
    the two 01:00 hours of a night when clocks fall back one."""
    local = t.astimezone(tz)
    if level == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)  # keeps `fold`: the right 01:00
    else:
        start = datetime.combine(local.date(), time(), tzinfo=tz)
    return start.astimezone(dt_timezone.utc)


def local_ceil(t: datetime, level: str, tz: ZoneInfo) -> datetime:
    """The start of the first local hour or day that begins at or after `t`, in UTC."""
    start = local_floor(t, level, tz)
    if start == t:
        return start
    if level == "hour":
        return start + timedelta(hours=1)
    next_day = t.astimezone(tz).date() + timedelta(days=1)
    return datetime.combine(next_day, time(), tzinfo=tz).astimezone(dt_timezone.utc)


def downsample(site, start: datetime, end: datetime, rollups=ROLLUPS, recent_only: bool = True) -> int:
    """Recomputes the site's hour rows (site, zones, devices) for every local hour that
    overlaps [start, end) from its minute rows, then the day rows of those days from the
    hour rows. Returns the number of rows written. Idempotent. `rollups` defaults to the
    live models (the migration that backfills passes its historical ones).

    With `recent_only` (the release), hours whose minute rows may have expired (older
    than MINUTE_ROLLUP_RETENTION_DAYS) are never recomputed — they would be rebuilt from a
    remnant; their days are. A backfill over minute rows that are all there passes False."""
    tz = ZoneInfo(site.timezone)
    kept_from = timezone.now() - timedelta(days=settings.AFFECTWATCH["MINUTE_ROLLUP_RETENTION_DAYS"])
    written = 0
    first_hour = local_floor(start, "hour", tz)
    if recent_only and first_hour < kept_from:
        first_hour = local_ceil(kept_from, "hour", tz)
    hours = (first_hour, local_ceil(end, "hour", tz))
    days = (local_floor(start, "day", tz), local_ceil(end, "day", tz))
    for scope, levels in rollups.items():
        if hours[0] < hours[1]:
            written += _fold(levels["minute"], "minute", levels["hour"], "hour", scope, site.id, *hours, tz)
        written += _fold(levels["hour"], "start", levels["day"], "day", scope, site.id, *days, tz)
    return written


def _fold(source, field, target, level, scope, site_id, lo, hi, tz) -> int:
    """target rows of [lo, hi) := the source rows summed per local `level` bucket.

    Buckets are computed here from each row's instant (`local_floor`), not by the
    database's truncation to local time, which gives the two 01:00 hours of a night when
    clocks fall back the same start."""
    keys = SCOPE_KEYS[scope]
    sums = {}
    rows = (source.objects.filter(site_id=site_id, **{f"{field}__gte": lo, f"{field}__lt": hi})
            .values_list(*keys, field, *CELL, "cells").iterator(chunk_size=5000))
    for row in rows:
        owner, at, counts = row[:len(keys)], row[len(keys)], row[len(keys) + 1:]
        key = (*owner, local_floor(at, level, tz))
        acc = sums.get(key)
        if acc is None:
            sums[key] = list(counts)
        else:
            for i, c in enumerate(CELL):
                acc[i] = max(acc[i], counts[i]) if c == "tracks" else acc[i] + counts[i]
            acc[-1] += counts[-1]
    objs = [target(**dict(zip(keys, key[:-1])), start=key[-1], cells=acc[-1], **dict(zip(CELL, acc[:-1])))
            for key, acc in sums.items()]
    if objs:
        target.objects.bulk_create(objs, batch_size=1000, update_conflicts=True,
                                   unique_fields=[scope, "start"], update_fields=[*CELL, "cells"])
    return len(objs)
