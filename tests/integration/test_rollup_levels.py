"""Hour and day rollups (apps/telemetry/downsample.py): written by the release, equal to
the same numbers computed from the minutes, read by trends at their own level, and kept
when the minute rows expire."""
import uuid
from collections import defaultdict
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.telemetry.downsample import downsample
from apps.telemetry.ingest import ingest
from apps.telemetry.models import ROLLUPS, SiteDayRollup, SiteHourRollup
from apps.telemetry.retention import purge_expired
from apps.telemetry.trends import columns, k_anonymity, noise_floor, trend, weekly_heatmap
from tests.telemetry_support import release_minutes

pytestmark = pytest.mark.django_db


def send(device, ts, tracks, label):
    events = [{"ts": ts.isoformat(), "camera": "cam0", "track": str(t), "label": label, "confidence": 0.9}
              for t in tracks]
    answer, _ = ingest(device, {"batch_id": str(uuid.uuid4()), "events": events})
    assert not answer["rejected"], answer


@pytest.fixture
def kolkata(tenant, make_device, settings):
    """A site at UTC+05:30 (local hours are not UTC hours) with two boards in one zone,
    people on either side of a local midnight, released with noise (ε = 1000: small
    enough to make every cell noisy, large enough for a few faces to be shown)."""
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "DP_EPSILON": 1000.0}
    tenant.site.timezone = "Asia/Kolkata"
    tenant.site.save()
    other, _ = make_device(tenant.site, "board-2")
    tz = ZoneInfo("Asia/Kolkata")
    # The last local midnight at least 3 h ago: every event below is in the past (ingest
    # refuses the future), whatever the hour the test runs at.
    midnight = (timezone.now() - timedelta(hours=3)).astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    for i, offset in enumerate(range(-150, 150, 7)):  # 2.5 h either side of local midnight
        at = midnight + timedelta(minutes=offset, seconds=5)
        send(tenant.device, at, range(i % 5 + 1), ("negative", "neutral", "positive")[i % 3])
        send(other, at, range(3), "negative")
    # Released up to 3 h after midnight, not up to now: the tests read midnight ± 1 day.
    release_minutes(tenant.device, other, since=midnight - timedelta(hours=4), until=midnight + timedelta(hours=3))
    return tenant, other, tz, midnight


def by_local(rows, level, tz):
    """Minute rows (minute, negative, neutral, positive, tracks, cells) summed per local
    bucket as the trends define it: sums, the busiest minute's tracks, summed cells."""
    out = defaultdict(lambda: [0, 0, 0, 0, 0])
    for minute, n, u, p, tk, c in rows:
        local = minute.astimezone(tz)
        start = local.replace(minute=0, second=0, microsecond=0) if level == "hour" else \
            local.replace(hour=0, minute=0, second=0, microsecond=0)
        b = out[start]
        b[0] += n
        b[1] += u
        b[2] += p
        b[3] = max(b[3], tk)
        b[4] += c
    return {int(k.timestamp()): tuple(v) for k, v in sorted(out.items())}


@pytest.mark.parametrize("level", ["hour", "day"])
def test_hour_and_day_rows_equal_the_minutes_summed_for_every_scope(kolkata, level):
    tenant, other, tz, _ = kolkata
    owners = {"site": tenant.site, "zone": tenant.device.zone, "device": other}
    for scope, owner in owners.items():
        minutes = ROLLUPS[scope]["minute"].objects.filter(**{scope: owner}).values_list(
            "minute", "negative", "neutral", "positive", "tracks", "cells")
        want = by_local(minutes, level, tz)
        got = {int(r[0].timestamp()): tuple(r[1:]) for r in ROLLUPS[scope][level].objects.filter(
            **{scope: owner}).order_by("start").values_list("start", "negative", "neutral", "positive", "tracks", "cells")}
        assert got == want, scope
        assert len(got) >= (2 if level == "day" else 5)  # the people span a local midnight


@pytest.mark.parametrize("bucket", ["hour", "day"])
def test_trends_read_their_own_level_and_show_what_the_minutes_would(kolkata, bucket):
    tenant, _, tz, midnight = kolkata
    since, until = midnight - timedelta(days=1), midnight + timedelta(days=1)
    minutes = ROLLUPS["site"]["minute"].objects.filter(site=tenant.site).values_list(
        "minute", "negative", "neutral", "positive", "tracks", "cells")
    want = columns([(t, *v) for t, v in by_local(minutes, bucket, tz).items()], k_anonymity(), noise_floor())
    # Nothing is shown that the minute computation would hide (and the reverse).
    assert trend(tenant.site, since, until, bucket) == want
    assert not all(want["suppressed"])
    # The minute rows can now go: the same trend is still there.
    for levels in ROLLUPS.values():
        levels["minute"].objects.all().delete()
    assert trend(tenant.site, since, until, bucket) == want


def test_minute_rows_expire_and_hours_and_days_stay(kolkata, settings):
    tenant, _, _, midnight = kolkata
    hours, days = SiteHourRollup.objects.count(), SiteDayRollup.objects.count()
    later = timezone.now() + timedelta(days=settings.AFFECTWATCH["MINUTE_ROLLUP_RETENTION_DAYS"] + 2)
    out = purge_expired(now=later)
    assert out["minute_rollups"] > 0
    assert not any(levels["minute"].objects.exists() for levels in ROLLUPS.values())
    assert (SiteHourRollup.objects.count(), SiteDayRollup.objects.count()) == (hours, days)
    heat = weekly_heatmap(tenant.site, midnight - timedelta(days=1), midnight + timedelta(days=1))
    assert any(v is not None for row in heat["negative_share"] for v in row)  # read from the hour rows


def test_downsampling_again_changes_nothing(kolkata):
    tenant, _, _, midnight = kolkata
    before = list(SiteHourRollup.objects.order_by("start").values_list("start", "negative", "tracks", "cells"))
    downsample(tenant.site, midnight - timedelta(hours=3), midnight + timedelta(hours=3))
    assert list(SiteHourRollup.objects.order_by("start").values_list("start", "negative", "tracks", "cells")) == before


def test_year_trend_with_last_year_comparison_over_the_api(kolkata):
    tenant, _, _, _ = kolkata
    client = APIClient()
    client.force_authenticate(tenant.officer)
    body = client.get(f"/api/v1/sites/{tenant.site.id}/trend/", {"hours": 24 * 365, "compare": "last_year"}).json()
    assert body["bucket"] == "day" and len(body["series"]["t"]) >= 2
    last = body["comparison"]
    assert last["series"]["t"] == last["aligned_t"] == []  # nothing a year ago
    csv = client.get(f"/api/v1/sites/{tenant.site.id}/trend/", {"hours": 24 * 365, "compare": "last_year",
                                                              "format": "csv"}).content.decode()
    assert csv.splitlines()[0].endswith("last_year_negative,last_year_neutral,last_year_positive")
    for query in ({"compare": "yesterday"}, {"compare": "last_year", "bucket": "minute"}):
        bad = client.get(f"/api/v1/sites/{tenant.site.id}/trend/", query)
        assert bad.status_code == 400 and "compare" in bad.json()
    for path in ("trend", "zones", "heatmap"):  # dates that would overflow the arithmetic
        bad = client.get(f"/api/v1/sites/{tenant.site.id}/{path}/", {"since": "0001-01-01T00:00:00Z",
                                                                     "until": "0001-01-02T00:00:00Z"})
        assert bad.status_code == 400 and "since" in bad.json(), (path, bad.content)


def test_the_two_hours_of_a_night_when_clocks_fall_back_stay_two(tenant):
    """New York, 2026-11-01: 01:00–02:00 local happens twice (EDT, then EST). Released a
    minute at a time, as the release does, both hours keep their own row and the 25-hour
    day holds every minute."""
    from datetime import datetime, timezone as dt_timezone

    from apps.telemetry.models import SiteMinuteRollup

    tenant.site.timezone = "America/New_York"
    tenant.site.save()
    first = datetime(2026, 11, 1, 4, 0, tzinfo=dt_timezone.utc)  # 00:00 EDT
    minutes = [first + timedelta(minutes=i) for i in range(180)]  # 00:00 EDT … 01:59 EST
    for m in minutes:  # recent_only=False: the date leaves the minute rows' retention in 2027
        SiteMinuteRollup.objects.create(site=tenant.site, minute=m, negative=1, tracks=1, cells=1)
        downsample(tenant.site, m, m + timedelta(minutes=1), recent_only=False)
    hours = dict(SiteHourRollup.objects.filter(site=tenant.site).values_list("start", "negative"))
    assert sorted((t.isoformat(), n) for t, n in hours.items()) == [
        ("2026-11-01T04:00:00+00:00", 60), ("2026-11-01T05:00:00+00:00", 60), ("2026-11-01T06:00:00+00:00", 60)]
    day = SiteDayRollup.objects.get(site=tenant.site)
    assert (day.start.isoformat(), day.negative, day.cells) == ("2026-11-01T04:00:00+00:00", 180, 180)
    # The 25-hour day is read whole by a range that starts in its last hour.
    series = trend(tenant.site, datetime(2026, 11, 2, 4, 30, tzinfo=dt_timezone.utc),
                   datetime(2026, 11, 2, 6, 0, tzinfo=dt_timezone.utc), "day")
    assert series["t"] == [int(first.timestamp())]


def test_a_board_back_after_months_does_not_rewrite_kept_hours(tenant, settings):
    """Minute rows expire after MINUTE_ROLLUP_RETENTION_DAYS; a board whose release mark is
    older than that must not rebuild the site's kept hour rows from what is left."""
    from apps.sites.models import Device
    from apps.telemetry.models import DeviceRelease
    from apps.telemetry.release import floor_minute, release_due

    old = floor_minute(timezone.now() - timedelta(days=settings.AFFECTWATCH["MINUTE_ROLLUP_RETENTION_DAYS"] + 10))
    old = old.replace(minute=0)
    kept = SiteHourRollup.objects.create(site=tenant.site, start=old, negative=50000, neutral=40000, positive=30000,
                                         tracks=40, cells=1200)
    DeviceRelease.objects.create(device=tenant.device, until=old)
    Device.objects.filter(pk=tenant.device.pk).update(last_seen_at=timezone.now())
    assert release_due()["cells"] > 0
    kept.refresh_from_db()
    assert (kept.negative, kept.neutral, kept.positive, kept.cells) == (50000, 40000, 30000, 1200)
    assert not ROLLUPS["site"]["minute"].objects.filter(minute__lt=old + timedelta(days=1)).exists()

