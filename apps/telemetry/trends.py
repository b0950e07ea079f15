"""Emotion trends read from the minute rollups — never from raw events — with buckets
built from fewer than K distinct tracks suppressed (k-anonymity).

Coarser buckets do not store their distinct tracks, so they use a lower bound: the
largest per-minute distinct count inside the bucket. Suppressing on a lower bound can
only hide more, never reveal more."""
import json
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import BigIntegerField, Func, Max, Sum
from django.db.models.functions import ExtractHour, ExtractIsoWeekDay, Trunc

from .models import MinuteRollup, SiteMinuteRollup, ZoneMinuteRollup

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


def default_bucket(span: timedelta) -> str:
    if span <= timedelta(hours=6):
        return "minute"
    if span <= timedelta(days=14):
        return "hour"
    return "day"


def rollups_for(site, zone=None, device=None):
    """The rollup rows of the narrowest scope asked for."""
    if device is not None:
        return MinuteRollup.objects.filter(device=device)
    if zone is not None:
        return ZoneMinuteRollup.objects.filter(zone=zone)
    return SiteMinuteRollup.objects.filter(site=site)


def columns(rows, k):
    """(t, negative, neutral, positive, tracks) rows → the columnar series, suppressing
    buckets with fewer than k distinct tracks."""
    t, neg, neu, pos, tracks = (list(c) for c in zip(*rows)) if rows else ([], [], [], [], [])
    hidden = [tk < k for tk in tracks]
    keep = lambda col: [None if h else v for v, h in zip(col, hidden)]  # noqa: E731
    return {"t": t, "negative": keep(neg), "neutral": keep(neu), "positive": keep(pos), "tracks": keep(tracks),
            "suppressed": hidden}


def _series_rows(site, since, until, bucket, zone, device):
    """SQL and parameters of the (t, negative, neutral, positive, tracks) rows, oldest first."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    rows = rollups_for(site, zone, device).filter(minute__gte=since, minute__lt=until)
    if bucket == "minute":
        rows = rows.order_by("minute").values_list(EpochSeconds("minute"), *LABELS, "tracks")
    else:
        rows = (
            rows.annotate(b=Trunc("minute", bucket, tzinfo=ZoneInfo(site.timezone)))
            .values("b")
            .annotate(n=Sum("negative"), u=Sum("neutral"), p=Sum("positive"), tk=Max("tracks"))
            .order_by("b")
            .values_list(EpochSeconds("b"), "n", "u", "p", "tk")
        )
    return rows.query.sql_with_params()


def trend(site, since, until, bucket="minute", zone=None, device=None):
    """Columns t (Unix seconds, bucket start), negative, neutral, positive, tracks and
    suppressed; oldest first."""
    sql, params = _series_rows(site, since, until, bucket, zone, device)
    # Straight from the cursor: Django's per-row converters would cost more than the query.
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return columns(cursor.fetchall(), k_anonymity())


class RawJSON(str):
    """JSON text that is already encoded; `renderers.JSONRenderer` splices it in as is."""


def trend_json(site, since, until, bucket="minute", zone=None, device=None) -> RawJSON:
    """`trend()` as JSON text. On PostgreSQL the database builds the text: a 30-day
    minute series is 43,200 rows, and loading 216,000 numbers into Python and encoding
    them again would cost three times the query."""
    if connection.vendor != "postgresql":
        return RawJSON(json.dumps(trend(site, since, until, bucket, zone, device), separators=(",", ":")))
    sql, params = _series_rows(site, since, until, bucket, zone, device)
    k = k_anonymity()
    # The aggregates read the rows in the sorted subquery's order (PostgreSQL's
    # documented alternative to ORDER BY inside each of six aggregates, which would
    # sort six times).
    kept = [f"'{name}', coalesce(json_agg(CASE WHEN r.tk >= %s THEN r.{col} END), '[]')"
            for name, col in zip((*LABELS, "tracks"), ("n", "u", "p", "tk"))]
    select = (f"SELECT json_build_object('t', coalesce(json_agg(r.t), '[]'), {', '.join(kept)}, "
              f"'suppressed', coalesce(json_agg(r.tk < %s), '[]'))::text "
              f"FROM ({sql}) AS r(t, n, u, p, tk)")
    with connection.cursor() as cursor:
        cursor.execute(select, (k, k, k, k, k, *params))
        return RawJSON(cursor.fetchone()[0])


def share(negative, neutral, positive):
    total = negative + neutral + positive
    return None if total == 0 else round(100.0 * negative / total, 1)


def zone_breakdown(site, since, until):
    """Per zone: counts and negative share over the range (suppressed below K)."""
    k = k_anonymity()
    rows = (
        ZoneMinuteRollup.objects.filter(site=site, minute__gte=since, minute__lt=until)
        .values("zone_id", "zone__name")
        .annotate(n=Sum("negative"), u=Sum("neutral"), p=Sum("positive"), tk=Max("tracks"))
        .order_by("zone__name")
    )
    out = []
    for r in rows:
        suppressed = r["tk"] < k
        out.append({
            "zone": r["zone_id"], "name": r["zone__name"], "suppressed": suppressed,
            **{label: None if suppressed else r[key] for label, key in zip(LABELS, "nup")},
            "negative_share": None if suppressed else share(r["n"], r["u"], r["p"]),
        })
    return out


def weekly_heatmap(site, since, until):
    """Negative share by weekday (1 = Monday) × hour of day, in the site's time zone."""
    k = k_anonymity()
    tz = ZoneInfo(site.timezone)
    rows = (
        SiteMinuteRollup.objects.filter(site=site, minute__gte=since, minute__lt=until)
        .annotate(day=ExtractIsoWeekDay("minute", tzinfo=tz), hour=ExtractHour("minute", tzinfo=tz))
        .values("day", "hour")
        .annotate(n=Sum("negative"), u=Sum("neutral"), p=Sum("positive"), tk=Max("tracks"))
        .order_by()
    )
    grid = [[None] * 24 for _ in range(7)]
    for r in rows:
        if r["tk"] >= k:
            grid[r["day"] - 1][r["hour"]] = share(r["n"], r["u"], r["p"])
    return {"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "hours": list(range(24)), "negative_share": grid}


def summary(site, since, until):
    """Totals and negative share over a range, for the overview."""
    k = k_anonymity()
    agg = SiteMinuteRollup.objects.filter(site=site, minute__gte=since, minute__lt=until).aggregate(
        n=Sum("negative"), u=Sum("neutral"), p=Sum("positive"), tk=Max("tracks")
    )
    n, u, p = (agg[x] or 0 for x in "nup")
    if (agg["tk"] or 0) < k:
        return {"detections": None, "negative_share": None, "suppressed": True}
    return {"detections": n + u + p, "negative_share": share(n, u, p), "suppressed": False}
