"""Ingest through the real API on the real database (PostgreSQL in CI)."""
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.sites.enrollment import revoke
from apps.telemetry.models import EmotionEvent, MinuteRollup

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
    rollup = MinuteRollup.objects.get(device=tenant.device)
    assert (rollup.negative, rollup.neutral, rollup.positive, rollup.tracks) == (1, 2, 1, 4)
    assert rollup.site_id == tenant.site.id


def test_repeated_batch_is_acknowledged_and_stored_once(tenant):
    body = {"batch_id": str(uuid.uuid4()), "events": [event(), event(track="2")]}
    first = post(tenant.token, body).json()
    second = post(tenant.token, body).json()
    assert first["duplicate"] is False and second["duplicate"] is True
    assert second["accepted"] == 2
    assert EmotionEvent.objects.count() == 2
    assert MinuteRollup.objects.get().neutral == 2


def test_rollup_counts_distinct_tracks_across_batches(tenant):
    ts = timezone.now().replace(second=5)
    for track in ("1", "1", "2"):
        post(tenant.token, {"batch_id": str(uuid.uuid4()), "events": [event(ts=ts.isoformat(), track=track)]})
    rollup = MinuteRollup.objects.get()
    assert rollup.neutral == 3 and rollup.tracks == 2


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
    ]
    res = post(tenant.token, {"batch_id": str(uuid.uuid4()), "events": events})
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


def test_oversized_body_is_413(tenant, settings):
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "INGEST_MAX_BYTES": 2000}
    res = post(tenant.token, {"batch_id": str(uuid.uuid4()), "events": [event(track=str(i)) for i in range(100)]})
    assert res.status_code == 413
    assert EmotionEvent.objects.count() == 0


def test_rate_limit_is_429_with_retry_after(tenant, settings):
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "INGEST_RATE_PER_MINUTE": 2}
    from django.core.cache import cache

    cache.clear()
    codes = [post(tenant.token, {"batch_id": str(uuid.uuid4()), "events": [event()]}).status_code for _ in range(3)]
    assert codes[:2] == [200, 200]
    res = post(tenant.token, {"batch_id": str(uuid.uuid4()), "events": [event()]})
    assert res.status_code == 429 and int(res["Retry-After"]) >= 0
    cache.clear()
