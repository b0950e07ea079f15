"""Job life cycle without a worker: cancel, the stale-worker reaper, the redelivery rule,
and who may watch a job's progress over its WebSocket."""
import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from asgiref.testing import ApplicationCommunicator
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import Role
from apps.datasets.models import Dataset
from apps.training import jobs
from apps.training.models import FineTuneJob


@pytest.fixture
def job(tenant, make_user):
    researcher = make_user(tenant.org, Role.RESEARCHER)
    ds = Dataset.objects.create(organisation=tenant.org, name="itch")
    job = FineTuneJob.objects.create(organisation=tenant.org, dataset=ds, params={"epochs": 2}, created_by=researcher)
    return job, researcher


def api(user):
    c = APIClient()
    c.force_login(user)
    return c


@pytest.mark.django_db
def test_cancelling_a_queued_job_ends_it_and_the_worker_skips_it(job):
    job, researcher = job
    res = api(researcher).post(f"/api/v1/training-jobs/{job.id}/cancel/")
    assert res.status_code == 200 and res.json()["status"] == "cancelled"
    assert jobs.claim(job.id) is None  # a message still in the queue is skipped
    job.refresh_from_db()
    assert job.status == "cancelled" and job.attempts == 0


@pytest.mark.django_db
def test_a_running_job_whose_worker_went_silent_is_failed_with_the_reason(job):
    job, researcher = job
    stale = timezone.now() - timedelta(minutes=5)
    FineTuneJob.objects.filter(pk=job.pk).update(status="running", attempts=1, worker="box:123", started_at=stale,
                                                 heartbeat_at=stale)
    body = api(researcher).get(f"/api/v1/training-jobs/{job.id}/").json()
    assert body["status"] == "failed"
    assert "box:123" in body["error"] and "stopped responding" in body["error"]


@pytest.mark.django_db
def test_a_redelivered_job_is_retried_once_then_failed(job, monkeypatch):
    job, _ = job
    FineTuneJob.objects.filter(pk=job.pk).update(status="running", attempts=1, heartbeat_at=timezone.now())
    claimed = jobs.claim(job.pk)  # the worker died; the broker delivered the task again
    assert claimed is not None and claimed.attempts == 2 and "retrying" in claimed.log
    assert jobs.claim(job.pk) is None  # and died again
    job.refresh_from_db()
    assert job.status == "failed" and "died 2 time(s)" in job.error


def test_a_reaped_job_is_retried_on_redelivery_and_a_plain_failure_is_not(job):
    """Whether a failed job may be retried is a field the reaper sets, not its message's wording."""
    job, _ = job
    stale = timezone.now() - timedelta(minutes=5)
    FineTuneJob.objects.filter(pk=job.pk).update(status="running", attempts=1, started_at=stale, heartbeat_at=stale)
    job.refresh_from_db()
    assert jobs.reap_if_stale(job).worker_lost
    FineTuneJob.objects.filter(pk=job.pk).update(error="reworded by a translator")
    claimed = jobs.claim(job.pk)
    assert claimed is not None and claimed.status == "running" and not claimed.worker_lost
    FineTuneJob.objects.filter(pk=job.pk).update(status="failed", error="the worker running this job ... (an "
                                                 "ordinary failure that merely sounds like one)", worker_lost=False)
    assert jobs.claim(job.pk) is None


def ws_connect(user, job_id):
    """Connect to the job's WebSocket as `user`: (accepted, close code, first message).
    (channels.testing needs daphne, which this project does not install.)"""
    import json

    from channels.routing import URLRouter

    from affectwatch.routing import websocket_urlpatterns

    path = f"/ws/training/jobs/{job_id}/"
    scope = {"type": "websocket", "path": path, "raw_path": path.encode(), "query_string": b"", "headers": [],
             "subprotocols": [], "user": user}

    async def run():
        comm = ApplicationCommunicator(URLRouter(websocket_urlpatterns), scope)
        await comm.send_input({"type": "websocket.connect"})
        first = await comm.receive_output(timeout=5)
        if first["type"] == "websocket.close":
            return False, first.get("code"), None
        message = await comm.receive_output(timeout=5)
        await comm.send_input({"type": "websocket.disconnect", "code": 1000})
        await comm.wait(timeout=5)
        return True, None, json.loads(message["text"])

    # A thread of its own: Playwright's sync API may hold an event loop on this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


@pytest.mark.django_db(transaction=True)
def test_progress_websocket_is_for_researchers_of_the_organisation(job, tenant, make_org, make_user):
    job, researcher = job
    FineTuneJob.objects.filter(pk=job.pk).update(progress={"epoch": 1, "epochs": 2, "loss": 1.2},
                                                 history=[{"epoch": 1, "loss": 1.2}])
    connected, _, message = ws_connect(researcher, job.pk)
    assert connected
    assert message["job"]["status"] == "queued" and message["job"]["progress"]["epoch"] == 1
    assert message["history"] == [{"epoch": 1, "loss": 1.2}]
    rival = make_user(make_org("rival"), Role.RESEARCHER)
    for user in (tenant.officer, rival):
        connected, code, _ = ws_connect(user, job.pk)
        assert not connected and code == 4403
