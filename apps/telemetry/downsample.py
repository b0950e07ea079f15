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

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Max, Sum
from django.db.models.functions import Trunc

from .models import ROLLUPS
from .privacy import CELL

SCOPE_KEYS = {"site": ("site_id",), "zone": ("site_id", "zone_id"), "device": ("site_id", "device_id")}


def local_floor(t: datetime, level: str, tz: ZoneInfo) -> datetime:
    """The start of the local hour or day holding `t` (aware), as an aware datetime."""
    local = t.astimezone(tz)
    if level == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    return datetime.combine(local.date(), time(), tzinfo=tz)


def local_ceil(t: datetime, level: str, tz: ZoneInfo) -> datetime:
    """The start of the first local hour or day that begins at or after `t`."""
    start = local_floor(t, level, tz)
    if start == t:
        return start
    if level == "hour":
        return start + timedelta(hours=1)
    return datetime.combine(start.date() + timedelta(days=1), time(), tzinfo=tz)


def downsample(site, start: datetime, end: datetime, rollups=ROLLUPS) -> int:
    """Recomputes the site's hour rows (site, zones, devices) for every local hour that
    overlaps [start, end) from its minute rows, then the day rows of those days from the
    hour rows. Returns the number of rows written. Idempotent. `rollups` defaults to the
    live models (the migration that backfills passes its historical ones).

    The minute rows of the hours recomputed must still exist: call it for recent spans
    (a release's; MINUTE_ROLLUP_RETENTION_DAYS is far longer than INGEST_MAX_PAST)."""
    tz = ZoneInfo(site.timezone)
    written = 0
    hours = (local_floor(start, "hour", tz), local_ceil(end, "hour", tz))
    days = (local_floor(start, "day", tz), local_ceil(end, "day", tz))
    for scope, levels in rollups.items():
        written += _fold(levels["minute"], "minute", levels["hour"], "hour", scope, site.id, *hours, tz)
        written += _fold(levels["hour"], "start", levels["day"], "day", scope, site.id, *days, tz)
    return written


def _fold(source, field, target, level, scope, site_id, lo, hi, tz) -> int:
    """target rows of [lo, hi) := the source rows summed per local `level` bucket."""
    keys = SCOPE_KEYS[scope]
    rows = (
        source.objects.filter(site_id=site_id, **{f"{field}__gte": lo, f"{field}__lt": hi})
        .annotate(bucket=Trunc(field, level, tzinfo=tz))
        .values(*keys, "bucket")
        .annotate(**{c: Sum(c) for c in CELL if c != "tracks"}, busiest=Max("tracks"), n_cells=Sum("cells"))
        .order_by()
    )
    objs = [target(**{k: r[k] for k in keys}, start=r["bucket"], tracks=r["busiest"], cells=r["n_cells"],
                   **{c: r[c] for c in CELL if c != "tracks"}) for r in rows]
    if objs:
        target.objects.bulk_create(objs, batch_size=1000, update_conflicts=True,
                                   unique_fields=[scope, "start"], update_fields=[*CELL, "cells"])
    return len(objs)
