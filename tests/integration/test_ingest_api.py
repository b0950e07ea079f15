"""Ingest through the real API on the real database (PostgreSQL in CI)."""
import json
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.sites.enrollment import revoke
from apps.telemetry.models import EmotionEvent, MinuteRollup, RawMinute, RollupTrack
from tests.telemetry_support import release_minutes

pytestmark = pytest.mark.django_db


def event(**over):
    e = {"ts": timezone.now().isoformat(), "camera": "cam0", "track": "1", "label": "neutral", "confidence": 0.9}
    e.update(over)
    return e


def post(token, body, **kw):
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Device {token}")
    return client.post("/api/v1/ingest/", body, format="json", **kw)


def test_batch_is_stored_with_rollup(tenant):
    body = {"batch_id": str(uuid.uuid4()), "events": [event(track=str(i), label=l) for i, l in
                                                       enumerate(["negative", "neutral", "positive", "neutral"])]}
    res = post(tenant.token, body)
    assert res.status_code == 200, res.content
    assert res.json() == {"batch_id": body["batch_id"], "accepted": 4, "rejected": [], "duplicate": False}
    assert EmotionEvent.objects.filter(device=tenant.device).count() == 4
    raw = RawMinute.objects.get(device=tenant.device)
    assert (raw.negative, raw.neutral, raw.positive, raw.tracks) == (1, 2, 1, 4)
    assert not MinuteRollup.objects.exists()  # published only when the minute is released


def test_repeated_batch_is_acknowledged_and_stored_once(tenant):
    body = {"batch_id": str(uuid.uuid4()), "events": [event(), event(track="2")]}
    first = post(tenant.token, body).json()
    second = post(tenant.token, body).json()
    assert first["duplicate"] is False and second["duplicate"] is True
    assert second["accepted"] == 2
    assert EmotionEvent.objects.count() == 2
    assert RawMinute.objects.get().neutral == 2


def test_rollup_counts_distinct_tracks_across_batches(tenant):
    ts = timezone.now().replace(second=5)
    for track in ("1", "1", "2"):
        post(tenant.token, {"batch_id": str(uuid.uuid4()), "events": [event(ts=ts.isoformat(), track=track)]})
    raw = RawMinute.objects.get()
    assert raw.neutral == 3 and raw.tracks == 2


def test_an_odd_utc_offset_lands_in_the_utc_minute(tenant):
    minute = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=3)
    utc = minute + timedelta(seconds=40)
    # 30 seconds east of UTC: the local clock reads the next minute.
    odd = (utc + timedelta(seconds=30)).replace(tzinfo=None).isoformat() + "+00:00:30"
    res = post(tenant.token, {"batch_id": str(uuid.uuid4()), "events": [event(ts=odd)]})
    assert res.status_code == 200 and res.json()["accepted"] == 1, res.content
    assert list(RawMinute.objects.values_list("minute", flat=True)) == [minute]


@pytest.mark.parametrize("batches", [1, 3])
def test_one_track_adds_at_most_the_bound_to_a_minute(tenant, settings, batches):
    """The sensitivity the noise is calibrated to: a track's detections in one minute are
    capped at DP_MAX_DETECTIONS, the first ones kept, whether they come in one batch or
    several; other tracks and other minutes keep their own allowance."""
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "DP_MAX_DETECTIONS": 5}
    minute = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=3)
    flood = [event(ts=(minute + timedelta(seconds=i)).isoformat(), track="loud",
                   label="negative" if i < 5 else "positive") for i in range(12)]
    flood += [event(ts=(minute + timedelta(seconds=20)).isoformat(), track="quiet", label="neutral")]
    flood += [event(ts=(minute + timedelta(minutes=1, seconds=i)).isoformat(), track="loud") for i in range(7)]
    for part in range(batches):
        res = post(tenant.token, {"batch_id": str(uuid.uuid4()), "events": flood[part::batches]})
        assert res.status_code == 200 and res.json()["accepted"] == len(flood[part::batches])
    cells = {r.minute: (r.negative, r.neutral, r.positive, r.tracks) for r in RawMinute.objects.all()}
    # One batch keeps the first five by time; split batches keep the first five that arrive.
    first = cells[minute]
    assert first[0] + first[2] == 5 and first[1] == 1 and first[3] == 2
    if batches == 1:
        assert first == (5, 1, 0, 2)
    assert cells[minute + timedelta(minutes=1)] == (0, 5, 0, 1)
    assert EmotionEvent.objects.count() == len(flood)  # the raw events are all kept
    assert sorted(RollupTrack.objects.values_list("track", "detections")) == [("loud", 5), ("loud", 5), ("quiet", 1)]


def test_invalid_events_are_rejected_with_reasons_and_valid_ones_kept(tenant):
    now = timezone.now()
    events = [
        event(),
        event(label="sadish"),
        event(confidence=1.5),
        event(ts=(now + timedelta(hours=1)).isoformat()),
        event(ts=(now - timedelta(days=60)).isoformat()),
        event(camera="cam9"),
        event(ts="yesterday"),
        {"ts": now.isoformat()},
        event(ts=now.timestamp()),
        event(track="a\x00b"),  # PostgreSQL cannot store NUL: once a 500
        event(track="\ud800"),  # a lone surrogate
    ]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Device {tenant.token}")
    # json.dumps escapes the lone surrogate as \\ud800, as a board's JSON encoder would.
    res = client.post("/api/v1/ingest/", json.dumps({"batch_id": str(uuid.uuid4()), "events": events}),
                      content_type="application/json")
    assert res.status_code == 200
    body = res.json()
    assert body["accepted"] == 2
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert "unknown label" in reasons[1]
    assert "confidence" in reasons[2]
    assert "future" in reasons[3]
    assert "past" in reasons[4]
    assert "unknown camera" in reasons[5]
    assert "invalid timestamp" in reasons[6]
    assert "missing field" in reasons[7]
    assert "printable" in reasons[9] and "printable" in reasons[10]
    assert EmotionEvent.objects.count() == 2


def test_missing_or_revoked_token_is_401(tenant):
    body = {"batch_id": str(uuid.uuid4()), "events": [event()]}
    assert post(None, body).status_code == 401
    assert post("awd_not-a-token", body).status_code == 401
    revoke(tenant.device)
    assert post(tenant.token, body).status_code == 401
    assert EmotionEvent.objects.count() == 0


@pytest.mark.parametrize(
    "body, reason",
    [
        ({"events": []}, "batch_id"),
        ({"batch_id": "nope", "events": []}, "batch_id"),
        ({"batch_id": str(uuid.uuid4()), "events": {"a": 1}}, "events must be a list"),
        ([1, 2], "JSON object"),
    ],
)
def test_malformed_body_is_400_with_reason(tenant, body, reason):
    res = post(tenant.token, body)
    assert res.status_code == 400
    assert reason in res.json()["detail"]


def test_not_json_is_400(tenant):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Device {tenant.token}")
    res = client.post("/api/v1/ingest/", "{not json", content_type="application/json")
    assert res.status_code == 400
    assert "JSON" in res.json()["detail"]


def test_deeply_nested_json_is_400_not_a_server_error(tenant):
    client = APIClient()
    deep = "[" * 100_000 + "]" * 100_000
    for path, auth in (("/api/v1/ingest/", f"Device {tenant.token}"), ("/api/v1/enroll/", None)):
        if auth:
            client.credentials(HTTP_AUTHORIZATION=auth)
        res = client.post(path, deep, content_type="application/json")
        assert res.status_code == 400 and "nested too deeply" in res.json()["detail"]


def test_rate_limit_is_429_with_retry_after(tenant, settings):
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "INGEST_RATE_PER_MINUTE": 2}
    from django.core.cache import cache

    from apps.telemetry.metrics import BATCHES

    for _ in range(3):  # the budget is per wall-clock minute: a run across a boundary is redone
        minute = int(time.time() // 60)
        cache.clear()
        refused = BATCHES.labels("rate_limited")._value.get()
        answers = [post(tenant.token, {"batch_id": str(uuid.uuid4()), "events": [event()]}) for _ in range(4)]
        if int(time.time() // 60) == minute:
            break
    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert all(0 < int(a["Retry-After"]) <= 60 for a in answers[2:])
    assert BATCHES.labels("rate_limited")._value.get() - refused == 2  # counted for /metrics
    cache.clear()


def test_batch_spanning_minutes_out_of_order_from_a_device_without_zone(tenant, make_site, make_device, settings):
    from apps.telemetry.models import SiteMinuteRollup, ZoneMinuteRollup

    yard = make_site(tenant.org, "yard", zones=())
    device, token = make_device(yard, "yard-board")
    assert device.zone_id is None
    base = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=10)
    # Minutes 2, 0, 1, 0: counts and distinct tracks must land in the right minute.
    events = [event(ts=(base + timedelta(minutes=m, seconds=s)).isoformat(), track=t, label=label)
              for m, s, t, label in [(2, 1, "a", "negative"), (0, 5, "a", "positive"), (1, 9, "b", "neutral"),
                                     (0, 30, "b", "positive"), (0, 31, "a", "negative")]]
    res = post(token, {"batch_id": str(uuid.uuid4()), "events": events})
    assert res.status_code == 200 and res.json()["accepted"] == 5, res.content
    rows = {r.minute: (r.negative, r.neutral, r.positive, r.tracks)
            for r in RawMinute.objects.filter(device=device).order_by("minute")}
    assert rows == {base: (1, 0, 2, 2), base + timedelta(minutes=1): (0, 1, 0, 1),
                    base + timedelta(minutes=2): (1, 0, 0, 1)}
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "DP_EPSILON": 1e9}  # noise 0: the sums are exact
    release_minutes(device)
    site_rows = {r.minute: (r.negative, r.neutral, r.positive, r.tracks)
                 for r in SiteMinuteRollup.objects.filter(site=yard, minute__in=list(rows))}
    assert site_rows == rows
    assert not ZoneMinuteRollup.objects.filter(site=yard).exists()
    assert EmotionEvent.objects.filter(device=device, zone__isnull=True).count() == 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_from_many_boards_lose_no_count(tenant, make_device, exact_counts):
    """Eight boards of one site post at once into the same minutes, each batch in its own
    minute order: every count arrives, and no transaction deadlocks."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from apps.telemetry.models import SiteMinuteRollup, ZoneMinuteRollup

    boards = [(tenant.device, tenant.token)] + [make_device(tenant.site, f"board-{i}") for i in range(2, 9)]
    base = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=5)
    order = [[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 2, 1]]

    def board(i):
        try:
            token = boards[i][1]
            for b in range(4):
                minutes = order[(i + b) % 4]
                events = [event(ts=(base + timedelta(minutes=m, seconds=n)).isoformat(), track=f"{i}-{n}",
                                label="negative") for m in minutes for n in range(10)]
                res = post(token, {"batch_id": str(uuid.uuid4()), "events": events})
                assert res.status_code == 200 and res.json()["accepted"] == 30, res.content
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(board, range(8)))
    release_minutes(*(d for d, _ in boards))
    minutes = [base + timedelta(minutes=m) for m in range(3)]
    site = {r.minute: (r.negative, r.tracks) for r in SiteMinuteRollup.objects.filter(site=tenant.site, minute__in=minutes)}
    # Per minute: 8 boards x 4 batches x 10 events; 8 boards x 10 distinct tracks.
    assert site == {m: (320, 80) for m in minutes}
    zone = {r.minute: (r.negative, r.tracks) for r in ZoneMinuteRollup.objects.filter(site=tenant.site, minute__in=minutes)}
    assert zone == site
    assert EmotionEvent.objects.count() == 8 * 4 * 30


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("removed", ["camera", "zone", "device"])
def test_a_delete_and_a_batch_in_flight_leave_no_event_naming_a_removed_row(make_org, make_site, make_device, removed):
    """The events table has no database foreign keys (their checks cost ingest 40 %);
    deleting a camera, zone or device takes the device's lock, so a batch that arrives
    meanwhile waits for the delete to commit and then reads what is left."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, transaction

    from apps.sites.models import Camera, Device, Zone

    site = make_site(make_org("acme"))
    device, token = make_device(site, cameras=("cam0", "cam1"))
    zone_id = device.zone_id
    deleted, release = threading.Event(), threading.Event()

    def delete():
        try:
            with transaction.atomic():
                {"camera": Camera.objects.filter(device=device, name="cam1"), "zone": Zone.objects.filter(pk=zone_id),
                 "device": Device.objects.filter(pk=device.pk)}[removed].delete()
                deleted.set()
                assert release.wait(30)
        finally:
            connection.close()

    def ingest():
        try:
            return post(token, {"batch_id": str(uuid.uuid4()),
                                "events": [event(camera="cam0"), event(camera="cam1", track="2")]})
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        deleting = pool.submit(delete)
        assert deleted.wait(30)
        posting = pool.submit(ingest)
        with pytest.raises(TimeoutError):
            posting.result(timeout=1.5)  # held off by the uncommitted delete
        release.set()
        deleting.result(timeout=30)
        res = posting.result(timeout=30)

    if removed == "device":
        assert res.status_code == 401 and "no longer enrolled" in res.json()["detail"]
    else:
        assert res.status_code == 200, res.content
        assert res.json()["accepted"] == (1 if removed == "camera" else 2)
    cameras = set(Camera.objects.values_list("pk", flat=True))
    zones = set(Zone.objects.values_list("pk", flat=True))
    for camera_id, zone in EmotionEvent.objects.values_list("camera_id", "zone_id"):
        assert camera_id in cameras and (zone is None or zone in zones)
    assert EmotionEvent.objects.exists() == (removed != "device")


def test_raw_events_have_no_delete_receivers():
    """The lock of signals.py holds only while Django deletes events in one statement after
    every pre_delete signal; a receiver on EmotionEvent would make it read them first."""
    from django.db.models.signals import post_delete, pre_delete

    assert not pre_delete.has_listeners(EmotionEvent) and not post_delete.has_listeners(EmotionEvent)


@pytest.mark.django_db(transaction=True)
def test_a_batch_that_waits_too_long_for_its_boards_lock_is_a_429(tenant, settings):
    """A delete (or another batch) holding the board's lock past INGEST_LOCK_WAIT_S: the
    batch is answered 429 with Retry-After, stores nothing, and its retry goes through."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, transaction

    from apps.telemetry.rollups import lock_device

    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers with its own busy timeout, not this lock")
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "INGEST_LOCK_WAIT_S": 0.5}
    held, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                lock_device(tenant.device.pk)
                held.set()
                assert release.wait(30)
        finally:
            connection.close()

    body = {"batch_id": str(uuid.uuid4()), "events": [event()]}
    with ThreadPoolExecutor(1) as pool:
        holding = pool.submit(hold)
        assert held.wait(30)
        res = post(tenant.token, body)
        release.set()
        holding.result(timeout=30)
    assert res.status_code == 429 and res["Retry-After"] == "5" and "busy" in res.json()["detail"]
    assert not EmotionEvent.objects.exists()
    again = post(tenant.token, body)
    assert again.status_code == 200 and again.json()["accepted"] == 1
