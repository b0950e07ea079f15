"""The release step: which cells are published, when, once, and only from heartbeating
boards — the part of the guarantee that is about *whether* a number exists."""
import uuid
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from apps.sites.enrollment import revoke
from apps.telemetry.ingest import ingest
from apps.telemetry.models import DeviceRelease, MinuteRollup, RawMinute, SiteMinuteRollup, ZoneMinuteRollup
from apps.telemetry.release import MAX_MINUTES_PER_RUN, floor_minute, release_due
from tests.telemetry_support import release_minutes

pytestmark = pytest.mark.django_db


def send(device, ts, n=1, label="negative", track="t"):
    answer, _ = ingest(device, {"batch_id": str(uuid.uuid4()), "events": [
        {"ts": ts.isoformat(), "camera": "cam0", "track": track, "label": label, "confidence": 0.9}] * n})
    assert answer["accepted"] == n


def test_every_minute_is_released_with_or_without_people(tenant, exact_counts):
    start = floor_minute(timezone.now()) - timedelta(minutes=30)
    send(tenant.device, start + timedelta(minutes=3, seconds=5), n=4)
    release_minutes(tenant.device, since=start, until=start + timedelta(minutes=10))
    rows = list(MinuteRollup.objects.filter(device=tenant.device).order_by("minute").values_list("minute", "negative"))
    assert [m for m, _ in rows] == [start + timedelta(minutes=i) for i in range(10)]
    assert [n for _, n in rows] == [0, 0, 0, 4, 0, 0, 0, 0, 0, 0]


def test_nothing_past_the_last_heartbeat_or_the_delay_and_nothing_twice(tenant, settings):
    now = floor_minute(timezone.now()) + timedelta(seconds=30)
    start = floor_minute(now) - timedelta(minutes=20)
    DeviceRelease.objects.create(device=tenant.device, until=start)
    type(tenant.device).objects.filter(pk=tenant.device.pk).update(last_seen_at=now - timedelta(minutes=12, seconds=30))
    assert release_due(now)["cells"] == 8  # up to the heartbeat's minute, exclusive
    assert release_due(now)["cells"] == 0  # released once
    type(tenant.device).objects.filter(pk=tenant.device.pk).update(last_seen_at=now)
    horizon = floor_minute(now - settings.AFFECTWATCH["RELEASE_DELAY"])
    assert release_due(now)["cells"] == (horizon - start) // timedelta(minutes=1) - 8
    assert DeviceRelease.objects.get(device=tenant.device).until == horizon


def test_late_detections_are_stored_but_never_change_a_released_number(tenant, exact_counts):
    minute = floor_minute(timezone.now()) - timedelta(minutes=10)
    send(tenant.device, minute, n=2)
    release_minutes(tenant.device, since=minute, until=minute + timedelta(minutes=5))
    send(tenant.device, minute + timedelta(seconds=40), n=3, track="late")
    release_minutes(tenant.device)
    assert RawMinute.objects.get(device=tenant.device, minute=minute).negative == 5
    assert MinuteRollup.objects.get(device=tenant.device, minute=minute).negative == 2
    assert SiteMinuteRollup.objects.get(site=tenant.site, minute=minute).negative == 2


def test_boards_never_seen_or_revoked_publish_nothing(tenant, make_device):
    quiet, _ = make_device(tenant.site, "never-seen")
    gone, _ = make_device(tenant.site, "revoked")
    type(gone).objects.filter(pk=gone.pk).update(last_seen_at=timezone.now())
    revoke(type(gone).objects.get(pk=gone.pk))
    release_due(timezone.now() + timedelta(hours=1))
    assert not MinuteRollup.objects.filter(device__in=[quiet, gone]).exists()


def test_a_board_back_from_a_long_outage_is_caught_up_in_bounded_runs(tenant):
    now = timezone.now()  # one clock for every run: a minute must not close between two
    since = floor_minute(now) - timedelta(days=2)
    DeviceRelease.objects.create(device=tenant.device, until=since)
    type(tenant.device).objects.filter(pk=tenant.device.pk).update(last_seen_at=now)
    runs = []
    while n := release_due(now)["cells"]:
        runs.append(n)
    due = int((DeviceRelease.objects.get(device=tenant.device).until - since).total_seconds() // 60)
    assert due > MAX_MINUTES_PER_RUN and runs == [MAX_MINUTES_PER_RUN, due - MAX_MINUTES_PER_RUN]
    assert MinuteRollup.objects.filter(device=tenant.device).count() == due


def test_zone_and_site_are_the_sums_of_the_noisy_device_cells(tenant, make_device):
    other, _ = make_device(tenant.site, "board-2")
    minute = floor_minute(timezone.now()) - timedelta(minutes=8)
    send(tenant.device, minute, n=9)
    send(other, minute, n=4, label="positive")
    release_minutes(tenant.device, other, since=minute - timedelta(minutes=5))
    cells = MinuteRollup.objects.filter(site=tenant.site).values("minute").annotate(
        n=Sum("negative"), p=Sum("positive"), tk=Sum("tracks"))
    device_sums = {c["minute"]: (c["n"], c["p"], c["tk"]) for c in cells}
    for model in (SiteMinuteRollup, ZoneMinuteRollup):
        rows = {r.minute: (r.negative, r.positive, r.tracks) for r in model.objects.filter(site=tenant.site)}
        assert rows == device_sums
        assert set(model.objects.filter(site=tenant.site).values_list("cells", flat=True)) == {2}
    assert MinuteRollup.objects.get(device=tenant.device, minute=minute).negative != 9 or \
        MinuteRollup.objects.get(device=other, minute=minute).positive != 4  # noise at the default ε


@pytest.mark.django_db(transaction=True)
def test_concurrent_release_runs_publish_each_cell_once(tenant, make_device):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    boards = [tenant.device] + [make_device(tenant.site, f"board-{i}")[0] for i in range(2, 6)]
    since = floor_minute(timezone.now()) - timedelta(hours=3)
    for d in boards:
        DeviceRelease.objects.create(device=d, until=since)
    type(tenant.device).objects.filter(pk__in=[d.pk for d in boards]).update(last_seen_at=timezone.now())

    def run(_):
        try:
            total = 0
            while n := release_due()["cells"]:
                total += n
            return total
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        released = sum(pool.map(run, range(4)))
    per_board = MinuteRollup.objects.filter(device__in=boards).count() // len(boards)
    assert released == MinuteRollup.objects.filter(device__in=boards).count() == per_board * len(boards)
    assert SiteMinuteRollup.objects.filter(site=tenant.site).count() == per_board
    assert set(SiteMinuteRollup.objects.filter(site=tenant.site).values_list("cells", flat=True)) == {len(boards)}


def test_the_worker_runs_the_release_that_beat_schedules(celery_worker, tenant, settings):
    import time

    from apps.telemetry.tasks import release_minutes as task

    assert settings.CELERY_BEAT_SCHEDULE["release-minutes"]["task"] == "apps.telemetry.tasks.release_minutes"
    DeviceRelease.objects.create(device=tenant.device, until=floor_minute(timezone.now()) - timedelta(minutes=30))
    type(tenant.device).objects.filter(pk=tenant.device.pk).update(last_seen_at=timezone.now())
    task.delay()
    deadline = time.monotonic() + 60
    while not MinuteRollup.objects.filter(device=tenant.device).exists() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert MinuteRollup.objects.filter(device=tenant.device).count() >= 27, celery_worker.log_text()[-2000:]


def test_an_outage_is_released_only_after_the_board_had_time_to_catch_up(tenant, settings):
    from apps.sites.heartbeat import record_heartbeat

    device = type(tenant.device).objects.get(pk=tenant.device.pk)
    start = floor_minute(timezone.now()) - timedelta(minutes=60)
    DeviceRelease.objects.create(device=device, until=start)
    type(device).objects.filter(pk=device.pk).update(last_seen_at=start + timedelta(minutes=10))
    device.refresh_from_db()
    record_heartbeat(device, {})  # back after 50 minutes without a heartbeat
    device.refresh_from_db()
    assert device.offline_from == start + timedelta(minutes=10) and device.back_online_at is not None
    assert release_due()["cells"] == 10  # only the minutes before the outage
    late = device.back_online_at + settings.AFFECTWATCH["RELEASE_CATCH_UP"] + timedelta(seconds=1)
    type(device).objects.filter(pk=device.pk).update(last_seen_at=late)
    assert release_due(late)["cells"] > 40  # the outage, once its backlog had time to arrive


def test_board_health_is_for_the_people_who_install_boards(tenant, make_user):
    from apps.accounts.models import Role
    from tests.support import api_as

    from rest_framework.test import APIClient

    board = APIClient()
    board.credentials(HTTP_AUTHORIZATION=f"Device {tenant.token}")
    res = board.post("/api/v1/heartbeat/", {"queue_depth": 7, "cameras": {"cam0": {"status": "ok", "fps": 14.5,
                                                                                   "faces": 1}}}, format="json")
    assert res.status_code == 200, res.content
    tenant.device.refresh_from_db()
    assert "faces" not in tenant.device.health["cameras"]["cam0"]  # a head count is never stored
    url = f"/api/v1/devices/{tenant.device.pk}/"
    tech = api_as(make_user(tenant.org, Role.FIELD_TECH, sites=[tenant.site])).get(url).json()
    officer = api_as(tenant.officer).get(url).json()
    assert tech["health"]["queue_depth"] == 7 and tech["cameras"][0]["fps"] == 14.5
    assert "health" not in officer and "fps" not in officer["cameras"][0]
