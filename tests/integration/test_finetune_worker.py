"""A real Celery worker runs a real fine-tune: a small consented data set made from
FER2013 test images, 2 epochs, a registered model version whose ONNX the edge agent
loads. And a worker killed mid-job never leaves the job 'running'."""
import io
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from apps.accounts.models import AuditEvent, Role
from apps.datasets import importer
from apps.datasets.models import Dataset, Subject
from apps.training import jobs
from apps.training.models import FineTuneJob
from tests.support import api_as, page_as
from tests.research_data import itch_zip

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def itch(tenant, make_user):
    researcher = make_user(tenant.org, Role.RESEARCHER)
    ds = Dataset.objects.create(organisation=tenant.org, name="itch-mini", created_by=researcher)
    f = io.BytesIO(itch_zip(n=60, subjects=10, workers=5))
    f.name, f.size = "itch-mini.zip", len(f.getvalue())
    record = importer.import_zip(ds, f, researcher)
    assert record.status == "accepted", record.errors
    yield ds, researcher
    shutil.rmtree(Path(settings.MEDIA_ROOT) / "datasets" / str(ds.id), ignore_errors=True)
    shutil.rmtree(Path(settings.MEDIA_ROOT) / "training" / str(tenant.org.id), ignore_errors=True)


def wait_for(job, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        job = jobs.reap_if_stale(job)
        if predicate(job):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job.pk} still {job.status} after {timeout}s: {job.progress} {job.error}")


def params(**kw):
    p = jobs.FineTuneParamsSerializer(data={"epochs": 2, "batch_size": 16, "lr": 0.002, **kw})
    p.is_valid(raise_exception=True)
    return dict(p.validated_data)


def test_a_worker_fine_tunes_and_registers_a_model_the_edge_agent_loads(celery_worker, itch):
    from edge_agent.classifier import load_model
    from edge_agent.labels import VALENCE_CLASSES
    from apps.training.registry import artifact_path

    ds, researcher = itch
    job = jobs.start(ds, params(worker_weights=[1, 2], epochs=6), researcher)  # a 2-value sweep
    job = wait_for(job, lambda j: j.finished, 300)
    assert job.status == "succeeded", f"{job.error}\n{job.log}\n{celery_worker.log_text()[-3000:]}"
    assert job.attempts == 1
    # progress was reported per epoch and run
    assert len(job.history) == 12 and {h["w"] for h in job.history} == {1.0, 2.0}
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["train_ce"]) and h["val_accuracy"] is not None
               for h in job.history)
    runs = job.results["runs"]  # on the validation subjects
    assert [r["w"] for r in runs] == [1.0, 2.0]
    for r in runs:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["negative_recall"] <= 1
        assert len(r["folds"]) == 1 and 1 <= r["folds"][0]["best_epoch"] <= 6
    test = job.results["test"]  # scored once, for the chosen w
    assert test["w"] == job.results["best_w"]
    assert set(test["roc"]) <= set(VALENCE_CLASSES) and len(test["confusion_matrix"]) == 3
    assert "wilcoxon_p" in test["folds"][0] and "pearson_r" in test["folds"][0]
    split = job.results["splits"][0]
    sides = [set(split[k]) for k in ("train_subjects", "val_subjects", "test_subjects")]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert [len(x) for x in sides] == [4, 2, 4]  # 40 % of 10 subjects test; a quarter of the rest validation

    mv = job.model_version
    assert mv is not None and mv.organisation == ds.organisation and mv.dataset == ds
    assert mv.hyperparameters["chosen_w"] == job.results["best_w"]
    assert mv.metrics["accuracy"] == test["accuracy"] and mv.metrics["test_subjects"] == sorted(sides[2])
    assert (mv.status == "rejected") == bool(job.results["rejected"]) and mv.rejected_reasons == job.results["rejected"]
    clf = load_model(artifact_path(mv.onnx_file))
    assert clf.labels == VALENCE_CLASSES and clf.version == mv.version
    assert clf.info.sha256 == mv.sha256
    assert clf.info.metadata["affectwatch.dataset"] == ds.name
    faces = [np.random.default_rng(0).integers(0, 255, (60, 60), dtype=np.uint8)]
    assert clf.classify(faces).shape == (1, 3)
    assert artifact_path(mv.weights_file).is_file() and artifact_path(mv.card_file).is_file()
    # Grad-CAM shows only subjects the registered model never trained on, and says whose face
    assert job.gradcam and all((Path(settings.MEDIA_ROOT) / g["file"]).is_file() for g in job.gradcam)
    assert {g["subject"] for g in job.gradcam} <= sides[2]

    page = page_as(researcher).get(f"/research/jobs/{job.pk}/")
    assert page.status_code == 200 and b'id="test-metrics"' in page.content and b'id="split-subjects"' in page.content

    # Withdrawal reaches everything derived: the pictures of a test subject's face go;
    # a training subject's withdrawal marks the job and blocks the version.
    api = api_as(researcher)
    shown = job.gradcam[0]["subject"]
    trained = sorted(sides[0])[0]
    for code in (shown, trained):
        subject = Subject.objects.get(dataset=ds, code=code)
        files = [Path(settings.MEDIA_ROOT) / n for n in subject.samples.values_list("image", flat=True)]
        files += [Path(settings.MEDIA_ROOT) / g["file"] for g in job.gradcam if g["subject"] == code]
        assert files and all(f.is_file() for f in files)
        assert api.post(f"/api/v1/subjects/{subject.pk}/withdraw-consent/").status_code == 200
        assert not any(f.exists() for f in files)  # nothing of theirs under the media root
        event = AuditEvent.objects.filter(action="subject.withdraw_consent", target=code).latest("at")
        assert len(event.details["deleted_files"]) == len([f for f in files if "gradcam" in str(f)])
    job.refresh_from_db()
    mv.refresh_from_db()
    assert shown not in {g["subject"] for g in job.gradcam}
    assert job.withdrawn_subjects == [trained] and mv.withdrawn_subjects == [trained]
    res = api.post(f"/api/v1/model-versions/{mv.pk}/promote/")
    assert res.status_code == 400 and "withdrew consent" in res.json()["override"]
    print("quality gate:", mv.status, mv.rejected_reasons, job.results["test"]["accuracy"])
    page = page_as(researcher).get(f"/research/models/{mv.pk}/")
    assert b"withdrew consent" in page.content and b'id="blockers"' in page.content


def test_a_worker_killed_mid_job_leaves_it_failed_or_retried(celery_worker, itch):
    ds, researcher = itch
    job = jobs.start(ds, params(epochs=400, batch_size=8), researcher)
    job = wait_for(job, lambda j: j.status == "running" and j.progress.get("epoch", 0) >= 2, 120)
    pid = job.worker_pid
    os.kill(pid, signal.SIGKILL)  # the process running the job, as the OOM killer would
    job = wait_for(job, lambda j: j.status in ("failed", "succeeded") or j.attempts >= 2, 150)
    if job.status == "failed":
        assert "worker" in job.error and ("stopped responding" in job.error or "died" in job.error)
    else:
        assert job.attempts >= 2 and job.worker_pid != pid  # retried by a fresh process
        assert "retrying" in job.log
    print("after kill:", job.status, job.attempts, job.error[:120])
    # Free the worker for the next test.
    jobs.cancel(job, researcher)
    job = wait_for(job, lambda j: j.finished, 120)
    assert job.status in ("failed", "cancelled", "succeeded")
    assert FineTuneJob.objects.filter(status="running").count() == 0
