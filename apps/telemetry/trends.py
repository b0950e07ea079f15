"""Emotion trends from the minute rollups, with small buckets suppressed (k-anonymity).

A bucket's distinct tracks are not stored for coarser buckets, so we use a lower bound:
per device, the largest per-minute distinct-track count in the bucket, summed over
devices. Suppressing on a lower bound can only hide more, never reveal more."""
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db.models import Max, Sum
from django.db.models.functions import Trunc

from .models import MinuteRollup

BUCKETS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
LABELS = ("negative", "neutral", "positive")


def default_bucket(span: timedelta) -> str:
    if span <= timedelta(hours=6):
        return "minute"
    if span <= timedelta(days=14):
        return "hour"
    return "day"


def trend(sites, since, until, bucket="minute", zone=None, device=None, k=None):
    """[{"t", "negative", "neutral", "positive", "tracks", "suppressed"}], oldest first."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    k = settings.AFFECTWATCH["K_ANONYMITY"] if k is None else k
    rows = MinuteRollup.objects.filter(site__in=sites, minute__gte=since, minute__lt=until)
    if zone is not None:
        rows = rows.filter(zone=zone)
    if device is not None:
        rows = rows.filter(device=device)
    rows = (
        rows.annotate(t=Trunc("minute", bucket))
        .values("t", "device_id")
        .annotate(negative=Sum("negative"), neutral=Sum("neutral"), positive=Sum("positive"), tracks=Max("tracks"))
        .order_by()
    )
    buckets = defaultdict(lambda: {"negative": 0, "neutral": 0, "positive": 0, "tracks": 0})
    for row in rows:
        b = buckets[row["t"]]
        for key in (*LABELS, "tracks"):
            b[key] += row[key]
    series = []
    for t in sorted(buckets):
        b = buckets[t]
        suppressed = b["tracks"] < k
        series.append(
            {
                "t": t.isoformat(),
                **{label: None if suppressed else b[label] for label in LABELS},
                "tracks": None if suppressed else b["tracks"],
                "suppressed": suppressed,
            }
        )
    return series
