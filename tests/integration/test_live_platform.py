"""The walking skeleton across real processes: uvicorn serving HTTP and WebSockets,
a Celery worker, and the live dashboard push."""
import asyncio
from concurrent.futures import ThreadPoolExecutor
import json
import time
import uuid
from datetime import timedelta

import pytest
import requests
import websockets
from django.utils import timezone

from tests.telemetry_support import release_minutes


def run_async(coro):
    """asyncio.run on a thread of its own: safe even if this thread has a loop running."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def login_cookie(server, username, password="a-long-test-password"):
    s = requests.Session()
    s.get(f"{server.url}/login/")
    res = s.post(f"{server.url}/login/", data={"username": username, "password": password,
                                               "csrfmiddlewaretoken": s.cookies["csrftoken"]},
                 headers={"Referer": f"{server.url}/login/"}, allow_redirects=False)
    assert res.status_code == 302, res.text[:500]
    return s


def test_live_server_health_is_ok(platform_server):
    status, body = platform_server.health()
    assert status == 200, body
    assert all(c["status"] == "ok" for c in body["checks"].values())


def test_a_release_reaches_the_dashboard_within_two_seconds(platform_server, tenant, exact_counts):
    """Ingest announces nothing (a push right after a batch would say someone was seen);
    the release that publishes the minute pushes it. Twenty people, 50 detections each:
    well above the server's noise floor at the default ε (released here without noise)."""
    session = login_cookie(platform_server, tenant.officer.username)
    cookie = f"sessionid={session.cookies['sessionid']}"
    ws_url = platform_server.url.replace("http", "ws") + f"/ws/sites/{tenant.site.id}/"
    now = timezone.now()
    events = [{"ts": now.isoformat(), "camera": "cam0", "track": str(t), "label": "positive",
               "confidence": 0.8} for t in range(20) for _ in range(50)]

    async def scenario():
        async with websockets.connect(ws_url, additional_headers={"Cookie": cookie, "Origin": platform_server.url}) as ws:
            res = await asyncio.to_thread(
                requests.post, f"{platform_server.url}/api/v1/ingest/",
                json={"batch_id": str(uuid.uuid4()), "events": events},
                headers={"Authorization": f"Device {tenant.token}"}, timeout=10)
            assert res.status_code == 200, res.text
            with pytest.raises(asyncio.TimeoutError):  # nothing is pushed for a batch
                await asyncio.wait_for(ws.recv(), timeout=1)
            t0 = time.monotonic()
            await asyncio.to_thread(release_minutes, tenant.device, since=now - timedelta(minutes=5))
            msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=2))
            return msg, time.monotonic() - t0

    msg, elapsed = run_async(scenario())
    assert elapsed < 2
    assert msg["type"] == "trend"
    series = msg["series"]
    i = series["t"].index(int(now.replace(second=0, microsecond=0).timestamp()))
    assert series["suppressed"][i] is False and (series["positive"][i], series["tracks"][i]) == (1000, 20)


def test_one_release_of_several_boards_is_one_complete_push(platform_server, tenant, make_device, exact_counts):
    """Four boards post into the same minute; one release run publishes them all and the
    dashboard gets one push with every board's counts."""
    session = login_cookie(platform_server, tenant.officer.username)
    cookie = f"sessionid={session.cookies['sessionid']}"
    ws_url = platform_server.url.replace("http", "ws") + f"/ws/sites/{tenant.site.id}/"
    minute = timezone.now().replace(second=0, microsecond=0)
    boards = [(tenant.device, tenant.token)] + [make_device(tenant.site, f"board-{i}") for i in range(2, 5)]
    with requests.Session() as s:
        for b, (_, token) in enumerate(boards):
            events = [{"ts": (minute + timedelta(seconds=b)).isoformat(), "camera": "cam0", "track": f"{b}-{n}",
                       "label": "negative", "confidence": 0.8} for n in range(10) for _ in range(50)]
            res = s.post(f"{platform_server.url}/api/v1/ingest/", json={"batch_id": str(uuid.uuid4()), "events": events},
                         headers={"Authorization": f"Device {token}"}, timeout=10)
            assert res.status_code == 200, res.text

    async def scenario():
        async with websockets.connect(ws_url, additional_headers={"Cookie": cookie, "Origin": platform_server.url}) as ws:
            await asyncio.to_thread(release_minutes, *(d for d, _ in boards), since=minute - timedelta(minutes=2))
            pushes = []
            try:
                while True:
                    pushes.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=1.5)))
            except asyncio.TimeoutError:
                return pushes

    pushes = run_async(scenario())
    assert len(pushes) == 1
    series = pushes[0]["series"]
    i = series["t"].index(int(minute.timestamp()))
    assert series["negative"][i] == 4 * 10 * 50 and series["tracks"][i] == 40


def test_websocket_refuses_other_tenants_sites(platform_server, tenant, make_org, make_site, make_user):
    other_org = make_org("rival")
    other_site = make_site(other_org, "rival-plant")
    session = login_cookie(platform_server, tenant.officer.username)
    cookie = f"sessionid={session.cookies['sessionid']}"
    ws_url = platform_server.url.replace("http", "ws") + f"/ws/sites/{other_site.id}/"

    async def scenario():
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(ws_url, additional_headers={"Cookie": cookie, "Origin": platform_server.url}) as ws:
                await ws.recv()

    run_async(scenario())
    assert session.get(f"{platform_server.url}/api/v1/sites/{other_site.id}/trend/").status_code == 404


def test_celery_worker_runs_the_retention_purge(celery_worker, tenant, settings):
    from apps.telemetry.ingest import ingest
    from apps.telemetry.models import EmotionEvent, MinuteRollup, RawMinute
    from apps.telemetry.tasks import purge_expired_events
    old = timezone.now() - timedelta(days=6)
    ingest(tenant.device, {"batch_id": str(uuid.uuid4()), "events": [
        {"ts": old.isoformat(), "camera": "cam0", "track": "1", "label": "neutral", "confidence": 0.5},
        {"ts": timezone.now().isoformat(), "camera": "cam0", "track": "1", "label": "neutral", "confidence": 0.5},
    ]})
    assert EmotionEvent.objects.count() == 2
    release_minutes(tenant.device, since=old - timedelta(minutes=1))
    released = MinuteRollup.objects.count()
    # The worker reads retention from its own environment (30 days), so age the event instead.
    EmotionEvent.objects.filter(ts__lt=timezone.now() - timedelta(days=1)).update(ts=timezone.now() - timedelta(days=40))
    RawMinute.objects.filter(minute__lt=timezone.now() - timedelta(days=1)).update(minute=timezone.now() - timedelta(days=40))
    purge_expired_events.delay()
    deadline = time.monotonic() + 60
    while EmotionEvent.objects.count() != 1 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert EmotionEvent.objects.count() == 1, celery_worker.log_text()[-3000:]
    assert RawMinute.objects.count() == 1  # the old raw cell goes with its event
    assert MinuteRollup.objects.count() == released > 6 * 24 * 60  # released cells stay


def test_a_dashboard_on_one_web_process_gets_the_push_for_a_batch_another_took(
        platform_server, celery_worker, tenant, server_logs):
    """Two ASGI server processes and a Celery worker sharing Redis, as a scaled deployment
    runs them: the batch goes to server B, the worker's release announces its minute over
    the Channels layer, and the dashboard connected to server A is pushed that minute. The
    three processes' counters add up at /metrics (prometheus-client's multiprocess mode)."""
    from apps.sites.models import Device
    from apps.telemetry.models import DeviceRelease
    from apps.telemetry.tasks import release_minutes as release_task
    from tests.support import PlatformServer

    other = PlatformServer(server_logs).start()
    try:
        session = login_cookie(platform_server, tenant.officer.username)
        cookie = f"sessionid={session.cookies['sessionid']}"
        ws_url = platform_server.url.replace("http", "ws") + f"/ws/sites/{tenant.site.id}/"
        minute = (timezone.now() - timedelta(minutes=3)).replace(second=0, microsecond=0)  # closed: releasable
        events = [{"ts": (minute + timedelta(seconds=s)).isoformat(), "camera": "cam0", "track": str(t),
                   "label": "negative", "confidence": 0.8} for t in range(20) for s in range(0, 60, 2)]
        DeviceRelease.objects.create(device=tenant.device, until=minute - timedelta(minutes=5))
        Device.objects.filter(pk=tenant.device.pk).update(last_seen_at=timezone.now())  # as its heartbeats say

        async def scenario():
            async with websockets.connect(ws_url, additional_headers={"Cookie": cookie,
                                                                      "Origin": platform_server.url}) as ws:
                res = await asyncio.to_thread(
                    requests.post, f"{other.url}/api/v1/ingest/", json={"batch_id": str(uuid.uuid4()), "events": events},
                    headers={"Authorization": f"Device {tenant.token}"}, timeout=10)
                assert res.status_code == 200 and res.json()["accepted"] == len(events), res.text
                await asyncio.to_thread(release_task.delay)  # beat's tick, run by the worker
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic()))
                    if msg["type"] == "trend" and int(minute.timestamp()) in msg["series"]["t"]:
                        return msg
                raise AssertionError("no push for the minute")

        before = counters()
        msg = run_async(scenario())
        i = msg["series"]["t"].index(int(minute.timestamp()))
        assert msg["series"]["suppressed"][i] is False  # 20 people, 600 detections: well above the noise
        deadline = time.monotonic() + 5  # server A observes the lag just after sending
        while (after := counters())["affectwatch_live_push_lag_seconds_count"] == before.get(
                "affectwatch_live_push_lag_seconds_count", 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert after["affectwatch_ingest_events_total"] - before["affectwatch_ingest_events_total"] == len(events)  # B
        assert after['affectwatch_live_announcements_total{outcome="sent"}'] > before[
            'affectwatch_live_announcements_total{outcome="sent"}']  # the worker
        assert after["affectwatch_live_push_lag_seconds_count"] > before.get("affectwatch_live_push_lag_seconds_count", 0)  # A
    finally:
        other.stop()


def counters() -> dict:
    """{sample as written in the exposition: value} of every process's metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    from apps.monitoring.collector import exposition

    return {s.name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items())) + "}" if s.labels else ""): s.value
            for f in text_string_to_metric_families(exposition().decode()) for s in f.samples}


def test_an_announcement_from_sync_code_under_a_running_loop_is_sent():
    """`publish_minutes` is synchronous (the release task, `seed_demo`); called where an
    event loop runs in the same thread (a notebook, a browser test's driver) it still
    reaches the site's group over the real Redis layer instead of logging a failure."""
    from channels.layers import get_channel_layer

    from apps.telemetry import metrics
    from apps.telemetry.live import publish_minutes, site_group

    layer = get_channel_layer()
    failed = metrics.ANNOUNCEMENTS.labels("failed")._value.get()
    now = timezone.now()

    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add(site_group(424242), channel)
        publish_minutes(424242, now - timedelta(minutes=1), now)  # sync, under this running loop
        return await asyncio.wait_for(layer.receive(channel), timeout=5)

    message = run_async(scenario())
    assert message["type"] == "minutes.touched" and message["last"] == pytest.approx(now.timestamp())
    assert metrics.ANNOUNCEMENTS.labels("failed")._value.get() == failed
