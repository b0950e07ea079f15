"""The fine-tune job's services (apps.training.jobs and .finetuning) one at a time,
against the real database and a real (tiny) fine-tune: claim, heartbeat, progress,
loading the consented images, register with its consent re-check, and the endings."""
import io
import shutil
import threading
from pathlib import Path

import pytest
from django.conf import settings

from apps.accounts.models import Role
from apps.datasets import importer
from apps.datasets.models import Dataset, Subject
from apps.datasets.services import withdraw_consent
from apps.training import finetuning, jobs
from apps.training.models import FineTuneJob
from tests.research_data import itch_zip

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher(tenant, make_user):
    return make_user(tenant.org, Role.RESEARCHER)


@pytest.fixture
def job(tenant, researcher):
    ds = Dataset.objects.create(organisation=tenant.org, name="svc")
    return FineTuneJob.objects.create(organisation=tenant.org, dataset=ds, params={"epochs": 1}, created_by=researcher)


@pytest.fixture
def imported(tenant, researcher):
    ds = Dataset.objects.create(organisation=tenant.org, name="svc-images", created_by=researcher)
    f = io.BytesIO(itch_zip(n=24, subjects=6, workers=3))
    f.name, f.size = "svc.zip", len(f.getvalue())
    record = importer.import_zip(ds, f, researcher)
    assert record.status == "accepted", record.errors
    yield ds
    shutil.rmtree(Path(settings.MEDIA_ROOT) / "datasets" / str(ds.id), ignore_errors=True)
    shutil.rmtree(Path(settings.MEDIA_ROOT) / "training" / str(tenant.org.id), ignore_errors=True)


def test_claim_runs_a_queued_job_once_and_skips_finished_ones(job):
    claimed = jobs.claim(job.pk)
    assert claimed.status == "running" and claimed.attempts == 1 and claimed.worker and claimed.heartbeat_at
    for status in ("succeeded", "cancelled", "failed"):
        FineTuneJob.objects.filter(pk=job.pk).update(status=status, worker_lost=False)
        assert jobs.claim(job.pk) is None
    assert jobs.claim(10**9) is None  # a message for a deleted job


def test_heartbeat_stamps_the_job_and_reports_a_cancel_request(job):
    claimed = jobs.claim(job.pk)
    assert jobs.heartbeat(job.pk) is False
    job.refresh_from_db()
    assert job.heartbeat_at >= claimed.heartbeat_at
    FineTuneJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    assert jobs.heartbeat(job.pk) is True


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_sees_a_cancel_request(job, monkeypatch):
    monkeypatch.setattr(jobs, "HEARTBEAT_S", 0.05)
    jobs.claim(job.pk)
    with jobs.Heartbeat(job.pk) as beat:
        FineTuneJob.objects.filter(pk=job.pk).update(cancel_requested=True)
        assert beat.cancel.wait(5)
    assert not beat.is_alive()
    assert not any(t.name == f"job-{job.pk}-heartbeat" for t in threading.enumerate())


def test_progress_is_rounded_kept_as_history_and_the_endings_are_fields(job):
    jobs.claim(job.pk)
    history = []
    jobs.report_progress(job, {"epoch": 1, "loss": 0.1234567}, history)
    jobs.report_progress(job, {"epoch": 2, "loss": 0.5}, history)
    job.refresh_from_db()
    assert job.progress == {"epoch": 2, "loss": 0.5} and job.history == [{"epoch": 1, "loss": 0.12346},
                                                                        {"epoch": 2, "loss": 0.5}]
    log = jobs.JobLog("earlier\n")
    log("one line")
    assert jobs.fail(job, "ValueError: " + "x" * 3000, log).startswith("ValueError")
    job.refresh_from_db()
    assert job.status == "failed" and len(job.error) == 2000 and not job.worker_lost and job.finished_at
    assert job.log.startswith("earlier\n") and "one line" in job.log
    assert jobs.claim(job.pk) is None  # an ordinary failure is not retried
    jobs.cancelled(job, log)
    job.refresh_from_db()
    assert job.status == "cancelled" and job.log.rstrip().endswith("cancelled")


def test_load_data_leaves_out_subjects_who_withdrew(imported, tenant, researcher):
    from workers.finetune import load_base

    job = FineTuneJob.objects.create(organisation=tenant.org, dataset=imported, params={}, created_by=researcher)
    spec = load_base().spec
    images, labels, is_worker, subjects = finetuning.load_data(job, spec)
    assert len(images) == 24 and set(subjects) == {f"S{i:02d}" for i in range(1, 7)}
    assert len(labels) == len(is_worker) == 24 and is_worker.sum() == 12
    withdraw_consent(Subject.objects.get(dataset=imported, code="S01"), researcher)
    images, _, _, subjects = finetuning.load_data(job, spec)
    assert len(images) == 20 and "S01" not in set(subjects)
    Subject.objects.filter(dataset=imported).update(consent_withdrawn_at="2026-01-01T00:00:00Z")
    with pytest.raises(ValueError, match="no images with consent"):
        finetuning.load_data(job, spec)


@pytest.mark.timeout(300)
def test_register_checks_consent_again_and_marks_the_version(imported, tenant, researcher):
    """A subject who withdrew while the job trained: the version registers marked, and
    the job succeeds in the same transaction."""
    params = jobs.FineTuneParamsSerializer(data={"epochs": 1, "batch_size": 8, "augment": False})
    params.is_valid(raise_exception=True)
    job = FineTuneJob.objects.create(organisation=tenant.org, dataset=imported, params=dict(params.validated_data),
                                     created_by=researcher)
    job = jobs.claim(job.pk)
    log, history = jobs.JobLog(), []
    trained = finetuning.train(job, log, should_stop=lambda: False,
                               on_progress=lambda p: jobs.report_progress(job, p, history))
    assert history and "trained in" in "".join(log.lines)
    gone = sorted(trained.result.splits[-1]["train_subjects"])[0]
    withdraw_consent(Subject.objects.get(dataset=imported, code=gone), researcher)
    mv = jobs.register(job, trained, log)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.model_version == mv
    assert mv.withdrawn_subjects == [gone] and job.withdrawn_subjects == [gone]
    assert mv.blockers and all(g["subject"] != gone for g in job.gradcam)
    assert (Path(settings.MEDIA_ROOT) / mv.onnx_file).is_file()


def test_a_cancel_during_training_ends_in_cancelled(imported, tenant, researcher):
    job = FineTuneJob.objects.create(organisation=tenant.org, dataset=imported,
                                     params={"epochs": 1, "worker_weights": [2.0]}, created_by=researcher)
    with pytest.raises(finetuning.Cancelled):
        finetuning.train(job, jobs.JobLog(), should_stop=lambda: True, on_progress=lambda p: None)
