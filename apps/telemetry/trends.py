"""Emotion trends read from the released rollups — minute rows, or the hour and day rows
`downsample.py` sums from them; never raw events or raw cells — so every number here is
post-processing of the differentially private cells of `privacy.py`, whatever ranges,
buckets and scopes a reader combines. A bucket is read from its own level (a 1-year
day trend is 365 rows), and a range reads every bucket that overlaps it, whole.

Display rules on top, all functions of the noisy numbers and of how many device cells
a number sums (public: it depends on the boards, not on people): counts are clamped at
zero at the end (noise can push a small sum below it), and a bucket is suppressed when
its distinct tracks (for coarser buckets: the busiest minute's) fall below K, or when its
detections are fewer than DISPLAY_MIN_SNR standard deviations of their own noise — its
share would be mostly noise. Suppression here is for readability; the protection is the
noise."""
import json
import math
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import BigIntegerField, Func, Max, Sum
from django.db.models.functions import ExtractHour, ExtractIsoWeekDay
from django.utils import timezone

from .downsample import local_floor
from .models import ROLLUPS
from .privacy import mechanism

BUCKETS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
LABELS = ("negative", "neutral", "positive")
COLUMNS = ("t", *LABELS, "tracks", "suppressed")


class EpochSeconds(Func):
    """A timestamp as Unix seconds, computed by the database: 40k rows of integers load
    an order of magnitude faster than 40k timestamps."""

    output_field = BigIntegerField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="CAST(EXTRACT(EPOCH FROM %(expressions)s) AS BIGINT)", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        # '%%%%s' survives both the template's and the SQLite backend's %-formatting as '%s'.
        return self.as_sql(compiler, connection, template="CAST(strftime('%%%%s', %(expressions)s) AS INTEGER)", **extra)


def k_anonymity():
    return settings.AFFECTWATCH["K_ANONYMITY"]


def noise_floor(snr: float | None = None) -> float:
    """Detections (all three labels) a one-cell bucket needs to be shown; a bucket of c
    cells needs √c times as many: `snr` (default DISPLAY_MIN_SNR) × σ of a cell's noisy
    total. At 2 about 2 % of empty buckets pass by chance; alert windows use ALERT_MIN_SNR."""
    snr = settings.AFFECTWATCH["DISPLAY_MIN_SNR"] if snr is None else snr
    return snr * mechanism().std_of_sum(3)


def hidden(negative, neutral, positive, tracks, cells, k, floor) -> bool:
    """The suppression rule of every published bucket (see the module docstring); k = 0
    or floor = 0 switches its part off."""
    return (k > 0 and tracks < k) or (floor > 0 and negative + neutral + positive < floor * math.sqrt(cells))


def default_bucket(span: timedelta) -> str:
    if span <= timedelta(hours=6):
        return "minute"
    if span <= timedelta(days=14):
        return "hour"
    return "day"


def rollups_for(site, zone=None, device=None, level="minute"):
    """(rows, time field) of the narrowest scope asked for, at a level of `ROLLUPS`:
    minute rows (kept MINUTE_ROLLUP_RETENTION_DAYS) or the hour and day rows that
    `downsample.py` keeps forever."""
    scope, owner = ("device", device) if device is not None else ("zone", zone) if zone is not None else ("site", site)
    return ROLLUPS[scope][level].objects.filter(**{scope: owner}), time_field(level)


def time_field(level: str) -> str:
    """The column holding a row's bucket start: `minute` for minute rows, `start` above."""
    return "minute" if level == "minute" else "start"


def overlapping(rows, level, since, until, tz):
    """The rows whose bucket overlaps [since, until): a coarser bucket is read whole (local
    hours and days of `tz`; a day may last 23 or 25 hours)."""
    field = time_field(level)
    if level == "minute":
        return rows.filter(**{f"{field}__gt": since - BUCKETS[level], f"{field}__lt": until})
    return rows.filter(**{f"{field}__gte": local_floor(since, level, tz), f"{field}__lt": until})


def level_for(since, until) -> str:
    """Totals over more than two days, or older than the minute rows are kept, read hour
    rows (whole hours); others read minutes."""
    kept_from = timezone.now() - timedelta(days=settings.AFFECTWATCH["MINUTE_ROLLUP_RETENTION_DAYS"])
    return "hour" if until - since > timedelta(days=2) or since < kept_from else "minute"


def clamp(value):
    """A published count as displayed: never below zero (None stays None)."""
    return None if value is None else max(0, value)


def columns(rows, k, floor):
    """(t, negative, neutral, positive, tracks, cells) rows → the columnar series, with
    suppressed buckets' numbers None."""
    t, neg, neu, pos, tracks, cells = (list(c) for c in zip(*rows)) if rows else ([], [], [], [], [], [])
    off = [hidden(*r, k, floor) for r in zip(neg, neu, pos, tracks, cells)]
    keep = lambda col: [None if h else clamp(v) for v, h in zip(col, off)]  # noqa: E731
    return {"t": t, "negative": keep(neg), "neutral": keep(neu), "positive": keep(pos), "tracks": keep(tracks),
            "suppressed": off}


def _series_rows(site, since, until, bucket, zone, device):
    """SQL and parameters of the (t, negative, neutral, positive, tracks, cells) rows, oldest first."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    rows, field = rollups_for(site, zone, device, level=bucket)
    rows = (overlapping(rows, bucket, since, until, ZoneInfo(site.timezone)).order_by(field)
            .values_list(EpochSeconds(field), *LABELS, "tracks", "cells"))
    return rows.query.sql_with_params()


def trend(site, since, until, bucket="minute", zone=None, device=None):
    """Columns t (Unix seconds, bucket start), negative, neutral, positive, tracks and
    suppressed; oldest first."""
    sql, params = _series_rows(site, since, until, bucket, zone, device)
    # Straight from the cursor: Django's per-row converters would cost more than the query.
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return columns(cursor.fetchall(), k_anonymity(), noise_floor())


class RawJSON(str):
    """JSON text that is already encoded; `renderers.JSONRenderer` splices it in as is."""


def trend_json(site, since, until, bucket="minute", zone=None, device=None) -> RawJSON:
    """`trend()` as JSON text. On PostgreSQL the database builds the text: a 30-day
    minute series is 43,200 rows, and loading 216,000 numbers into Python and encoding
    them again would cost three times the query."""
    if connection.vendor != "postgresql":
        return RawJSON(json.dumps(trend(site, since, until, bucket, zone, device), separators=(",", ":")))
    sql, params = _series_rows(site, since, until, bucket, zone, device)
    # The aggregates read the rows in the sorted subquery's order (PostgreSQL's
    # documented alternative to ORDER BY inside each of six aggregates, which would
    # sort six times). `off` is `hidden()` in SQL.
    kept = [f"'{name}', coalesce(json_agg(CASE WHEN NOT r.off THEN greatest(r.{col}, 0) END), '[]')"
            for name, col in zip((*LABELS, "tracks"), ("n", "u", "p", "tk"))]
    select = (f"SELECT json_build_object('t', coalesce(json_agg(r.t), '[]'), {', '.join(kept)}, "
              f"'suppressed', coalesce(json_agg(r.off), '[]'))::text "
              f"FROM (SELECT r.*, ((%s > 0 AND r.tk < %s) OR (%s > 0 AND r.n + r.u + r.p < %s * sqrt(r.c))) AS off "
              f"      FROM ({sql}) AS r(t, n, u, p, tk, c)) AS r")
    k, floor = k_anonymity(), noise_floor()
    with connection.cursor() as cursor:
        cursor.execute(select, (k, k, floor, floor, *params))
        return RawJSON(cursor.fetchone()[0])


def share(negative, neutral, positive):
    """Negative share in percent (one decimal) of clamped counts; None without detections."""
    negative, neutral, positive = clamp(negative), clamp(neutral), clamp(positive)
    total = negative + neutral + positive
    return None if total == 0 else round(100.0 * negative / total, 1)


def _site_rows(scope, site, level, since, until):
    """A site's rows of one scope ("site": its sums; "zone": every zone's) overlapping the range."""
    return overlapping(ROLLUPS[scope][level].objects.filter(site=site), level, since, until, ZoneInfo(site.timezone))


def zone_breakdown(site, since, until):
    """Per zone: counts and negative share over the range (suppressed below K)."""
    k, floor = k_anonymity(), noise_floor()
    level = level_for(since, until)
    rows = (
        _site_rows("zone", site, level, since, until)
        .values("zone_id", "zone__name")
        .annotate(n=Sum("negative"), u=Sum("neutral"), p=Sum("positive"), tk=Max("tracks"), c=Sum("cells"))
        .order_by("zone__name")
    )
    out = []
    for r in rows:
        suppressed = hidden(r["n"], r["u"], r["p"], r["tk"], r["c"], k, floor)
        out.append({
            "zone": r["zone_id"], "name": r["zone__name"], "suppressed": suppressed,
            **{label: None if suppressed else clamp(r[key]) for label, key in zip(LABELS, "nup")},
            "negative_share": None if suppressed else share(r["n"], r["u"], r["p"]),
        })
    return out


def weekly_heatmap(site, since, until):
    """Negative share by weekday (1 = Monday) × hour of day, in the site's time zone."""
    k, floor = k_anonymity(), noise_floor()
    tz = ZoneInfo(site.timezone)
    rows = (
        _site_rows("site", site, "hour", since, until)
        .annotate(day=ExtractIsoWeekDay("start", tzinfo=tz), hour=ExtractHour("start", tzinfo=tz))
        .values("day", "hour")
        .annotate(n=Sum("negative"), u=Sum("neutral"), p=Sum("positive"), tk=Max("tracks"), c=Sum("cells"))
        .order_by()
    )
    grid = [[None] * 24 for _ in range(7)]
    for r in rows:
        if not hidden(r["n"], r["u"], r["p"], r["tk"], r["c"], k, floor):
            grid[r["day"] - 1][r["hour"]] = share(r["n"], r["u"], r["p"])
    return {"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "hours": list(range(24)), "negative_share": grid}


def summary(site, since, until):
    """Totals and negative share over a range, for the overview."""
    agg = _site_rows("site", site, level_for(since, until), since, until).aggregate(
        n=Sum("negative"), u=Sum("neutral"), p=Sum("positive"), tk=Max("tracks"), c=Sum("cells")
    )
    if hidden(*(agg[x] or 0 for x in ("n", "u", "p", "tk", "c")), k_anonymity(), noise_floor()):
        return {"detections": None, "negative_share": None, "suppressed": True}
    n, u, p = (clamp(agg[x]) for x in "nup")
    return {"detections": n + u + p, "negative_share": share(n, u, p), "suppressed": False}
