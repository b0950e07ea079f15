"""A fine-tune job's life, for the pages, the API and the Celery task alike.

Web side: start, cancel, and the stale-worker reaper (`reap_if_stale`). Worker side, the
steps `tasks.run_finetune` calls: `claim` (queued or lost → running, counting attempts),
`Heartbeat` (stamps `heartbeat_at`, watches for a cancel), `report_progress`, `register`
(the trained model into the registry, consent checked again), and the endings
`succeeded`, `fail` and `cancelled`. Every state lives in the job's fields (`status`,
`worker_lost`, `cancel_requested`, `attempts`), never in the wording of `error`.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework import serializers

from apps.accounts.access import audit

from .models import FineTuneJob, ModelVersion

log = logging.getLogger(__name__)
HEARTBEAT_S = 3.0
MAX_HISTORY = 5000
LOG_CHARS = 20000
REGISTER_TRIES = 5


def stale_after():
    """A running job's worker stamps heartbeat_at every few seconds; silence for longer
    than this (settings.AFFECTWATCH["TRAINING_STALE_AFTER"]) means the worker died
    (kill -9, out of memory, machine lost)."""
    return settings.AFFECTWATCH["TRAINING_STALE_AFTER"]


def max_attempts() -> int:
    """How many times a job whose worker died is started (TRAINING_MAX_ATTEMPTS)."""
    return settings.AFFECTWATCH["TRAINING_MAX_ATTEMPTS"]


class FineTuneParamsSerializer(serializers.Serializer):
    """Every option of a fine-tune, with its range; a 400 names the field."""

    epochs = serializers.IntegerField(min_value=1, max_value=500, default=30)
    lr = serializers.FloatField(min_value=1e-6, max_value=1.0, default=1e-3, help_text="peak learning rate")
    batch_size = serializers.IntegerField(min_value=2, max_value=1024, default=32)
    w = serializers.FloatField(min_value=0.1, max_value=100, required=False,
                               help_text="loss weight of working subjects' images (1 = unweighted)")
    worker_weights = serializers.ListField(
        child=serializers.FloatField(min_value=0.1, max_value=100), min_length=1, max_length=10, required=False,
        help_text="a sweep: one fine-tune per w, compared in one table (e.g. [1, 1.5, 2, 3, 4])")
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    split = serializers.ChoiceField(choices=["holdout", "kfold"], default="holdout",
                                    help_text="holdout: the paper's 60 / 40 by subject; kfold: cross-validation")
    test_fraction = serializers.FloatField(min_value=0.1, max_value=0.9, default=0.4)
    val_fraction = serializers.FloatField(
        min_value=0.1, max_value=0.5, default=0.25,
        help_text="share of the training side's subjects held out to pick the epoch, w and the quality gate")
    folds = serializers.IntegerField(min_value=2, max_value=10, default=5)
    select = serializers.ChoiceField(choices=["accuracy", "negative_recall", "auc"], default="accuracy",
                                     help_text="which metric picks the registered model of a sweep")
    augment = serializers.BooleanField(default=True)

    def validate_worker_weights(self, value):
        if len(set(value)) != len(value):
            raise serializers.ValidationError("each w may appear once")
        return value

    def validate(self, attrs):
        if "w" in attrs and "worker_weights" in attrs:
            raise serializers.ValidationError({"w": "give w or worker_weights, not both"})
        attrs["worker_weights"] = attrs.pop("worker_weights", None) or [attrs.pop("w", 2.0)]
        attrs.pop("w", None)
        return attrs


class FineTuneRequestSerializer(FineTuneParamsSerializer):
    """The body of POST /api/v1/training-jobs/ (for the schema; the view checks each part)."""

    dataset = serializers.IntegerField(help_text="the data set to fine-tune on")
    base = serializers.IntegerField(required=False, allow_null=True,
                                    help_text="model version to start from (default: the shipped FER2013 LiExNet)")


def check_dataset(dataset, params: dict) -> dict:
    """Field errors for a data set that cannot support these options (the very split
    the job will make is tried)."""
    from workers.finetune import FinetuneError, subject_splits

    rows = list(dataset.samples.filter(subject__consent_withdrawn_at__isnull=True)
                .values_list("subject__code", "label"))
    if len(rows) < 4:
        return {"dataset": f"the data set has {len(rows)} image(s) with consent; import at least 4 first"}
    try:
        subject_splits([r[0] for r in rows], [r[1] for r in rows], params["split"], params["test_fraction"],
                       params["folds"], params["seed"], params["val_fraction"])
    except FinetuneError as exc:
        return {"folds" if params["split"] == "kfold" else "dataset": str(exc)}
    return {}


def start(dataset, params: dict, user, base=None) -> FineTuneJob:
    """Create a queued job (audited) and queue its task once the transaction commits."""
    from .tasks import run_finetune

    job = FineTuneJob.objects.create(organisation=dataset.organisation, dataset=dataset, base=base, params=params,
                                     created_by=user)
    audit(user, "training.start", f"job {job.pk}", organisation=dataset.organisation, dataset=dataset.pk, params=params)
    # Queue after commit so the worker finds the row.
    transaction.on_commit(lambda: _enqueue(job.pk, run_finetune))
    return job


def _enqueue(job_id, task):
    try:
        res = task.apply_async(args=[job_id])
    except Exception as exc:  # noqa: BLE001 - broker down: say so on the job, not a 500
        FineTuneJob.objects.filter(pk=job_id, status=FineTuneJob.Status.QUEUED).update(
            status=FineTuneJob.Status.FAILED, error=f"could not queue the job: {exc}", finished_at=timezone.now())
        return
    FineTuneJob.objects.filter(pk=job_id).update(celery_task_id=res.id or "")


def cancel(job: FineTuneJob, user) -> FineTuneJob:
    """Ask for a job's end (audited): a queued job ends at once, a running one when its
    worker next looks (`Heartbeat`). A finished job is returned unchanged."""
    with transaction.atomic():
        job = FineTuneJob.objects.select_for_update().get(pk=job.pk)
        if job.finished:
            return job
        job.cancel_requested = True
        if job.status == FineTuneJob.Status.QUEUED:  # the worker will skip it
            job.status, job.finished_at = FineTuneJob.Status.CANCELLED, timezone.now()
        job.save()
        audit(user, "training.cancel", f"job {job.pk}", organisation=job.organisation)
    return job


def reap_if_stale(job: FineTuneJob) -> FineTuneJob:
    """A running job whose worker went silent is failed with the reason, never left
    'running'. (A redelivered task may still pick it up again and retry it.)"""
    if job.status != FineTuneJob.Status.RUNNING:
        return job
    beat = job.heartbeat_at or job.started_at
    if beat and timezone.now() - beat > stale_after():
        reason = (f"the worker running this job ({job.worker or 'unknown'}) stopped responding; "
                  f"last heartbeat {beat.isoformat(timespec='seconds')}")
        n = FineTuneJob.objects.filter(pk=job.pk, status=FineTuneJob.Status.RUNNING, heartbeat_at=job.heartbeat_at).update(
            status=FineTuneJob.Status.FAILED, error=reason, worker_lost=True, finished_at=timezone.now())
        if n:
            job.refresh_from_db()
    return job


def reap_stale_jobs(queryset=None) -> int:
    """`reap_if_stale` over the running jobs of `queryset` (default all); how many failed."""
    qs = queryset if queryset is not None else FineTuneJob.objects.all()
    n = 0
    for job in qs.filter(status=FineTuneJob.Status.RUNNING):
        n += reap_if_stale(job).status == FineTuneJob.Status.FAILED
    return n


# --- the worker's side -------------------------------------------------------------


def job_group(job_id) -> str:
    """The channel-layer group of a job's watchers."""
    return f"training-job-{job_id}"


def push(job_id, payload: dict) -> None:
    """Tell a job's watchers it changed. Best effort: with Redis the page hears it at
    once; without, it polls the row."""
    try:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(job_group(job_id), {"type": "job.update", "job": payload})
    except Exception:  # noqa: BLE001
        log.debug("channel layer push failed", exc_info=True)


def claim(job_id) -> FineTuneJob | None:
    """The job, now running in this process, or None when this delivery must not run it:
    it is gone, finished, cancelled (a queued job with a cancel request ends here), or
    its worker died `max_attempts()` times (it fails with that reason). A job that was
    running, or was reaped (`worker_lost`), lost its worker: this is its next attempt."""
    with transaction.atomic():
        job = FineTuneJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status in (FineTuneJob.Status.SUCCEEDED, FineTuneJob.Status.CANCELLED):
            return None
        lost = job.status == FineTuneJob.Status.RUNNING or (
            job.status == FineTuneJob.Status.FAILED and job.worker_lost)
        if job.status == FineTuneJob.Status.FAILED and not lost:
            return None
        if job.cancel_requested:
            job.status, job.finished_at = FineTuneJob.Status.CANCELLED, timezone.now()
            job.save()
            return None
        if lost and job.attempts >= max_attempts():
            job.status, job.finished_at, job.worker_lost = FineTuneJob.Status.FAILED, timezone.now(), False
            job.error = (f"the worker running this job died {job.attempts} time(s) (killed, out of memory or "
                         f"lost); not retried again. Last worker: {job.worker or 'unknown'}")
            job.save()
            return None
        if lost:
            job.log += f"{timezone.now():%H:%M:%S} attempt {job.attempts} lost with its worker; retrying\n"
        job.attempts += 1
        job.status, job.error, job.worker_lost = FineTuneJob.Status.RUNNING, "", False
        job.started_at = job.heartbeat_at = timezone.now()
        job.finished_at = None
        job.worker_pid = os.getpid()
        job.worker = f"{socket.gethostname()}:{os.getpid()}"
        job.progress, job.history = {}, []
        job.save()
        return job


def heartbeat(job_id) -> bool:
    """Stamp the job's heartbeat_at; whether its cancel was requested."""
    FineTuneJob.objects.filter(pk=job_id).update(heartbeat_at=timezone.now())
    return FineTuneJob.objects.filter(pk=job_id, cancel_requested=True).exists()


class Heartbeat(threading.Thread):
    """A thread calling `heartbeat` every HEARTBEAT_S while the job runs; `cancel` is set
    once a cancel was requested. Use as a context manager around the work."""

    def __init__(self, job_id):
        super().__init__(daemon=True, name=f"job-{job_id}-heartbeat")
        self.job_id = job_id
        self.cancel = threading.Event()
        self.done = threading.Event()

    def run(self):
        try:
            while not self.done.wait(HEARTBEAT_S):
                try:
                    if heartbeat(self.job_id):
                        self.cancel.set()
                except Exception:  # noqa: BLE001 - a database hiccup: try again next beat
                    log.warning("heartbeat of job %s failed; retrying", self.job_id, exc_info=True)
                    connection.close()
        finally:
            connection.close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join(timeout=10)
        return False


class JobLog:
    """The job's log: what it held when claimed, and timestamped lines since."""

    def __init__(self, start: str = ""):
        self.lines = [start] if start else []

    def __call__(self, text: str) -> None:
        self.lines.append(f"{timezone.now():%H:%M:%S} {text}\n")

    def text(self) -> str:
        """The log as stored: its last LOG_CHARS characters."""
        return "".join(self.lines)[-LOG_CHARS:]


def _update(job_id, **fields):
    fields["heartbeat_at"] = timezone.now()
    FineTuneJob.objects.filter(pk=job_id).update(**fields)


def report_progress(job: FineTuneJob, progress: dict, history: list[dict]) -> dict:
    """Record one epoch's report (floats rounded) as the job's progress, append it to
    `history` (the job keeps the last MAX_HISTORY), and tell the watchers."""
    progress = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in progress.items()}
    history.append(progress)
    _update(job.pk, progress=progress, history=history[-MAX_HISTORY:])
    push(job.pk, {"status": "running", "progress": progress})
    return progress


def register(job: FineTuneJob, trained, log_line: JobLog) -> ModelVersion:
    """Export the trained model under the organisation's next version number and add it
    to the registry; the job succeeds in the same transaction. Consent is checked again
    under the subjects' row locks: a subject who withdrew while the job ran loses their
    Grad-CAM pictures and marks the version. Two jobs of one data set finishing together
    may pick the same number: the loser exports again under the next one. When no
    version is registered, the job's Grad-CAM pictures are deleted."""
    from . import finetuning

    for attempt in range(REGISTER_TRIES):
        try:
            mv = _register_once(job, trained, finetuning)
            break
        except IntegrityError:
            if attempt == REGISTER_TRIES - 1:
                raise
            log_line("the version number was taken meanwhile; trying the next one")
        finally:
            if not FineTuneJob.objects.filter(pk=job.pk, status=FineTuneJob.Status.SUCCEEDED).exists():
                # No registered job lists them: pictures of faces nobody could find again go.
                shutil.rmtree(Path(settings.MEDIA_ROOT) / job.artifact_dir / "gradcam", ignore_errors=True)
    log_line(f"registered {mv.version} ({mv.size} bytes, sha256 {mv.sha256[:12]}…)")
    return mv


def _register_once(job, trained, finetuning) -> ModelVersion:
    from edge_agent.labels import VALENCE_CLASSES

    from apps.datasets.models import Subject

    from .registry import next_version_name
    from .withdrawal import drop_pictures, used_subjects

    org, dataset, result, base_version = job.organisation, job.dataset, trained.result, trained.base_version
    name, number = next_version_name(org, dataset)
    files = finetuning.export(job, trained, f"{name}@{number}")
    media = Path(settings.MEDIA_ROOT)
    with transaction.atomic():
        # Subject rows are locked before the job's, as a withdrawal does.
        rows = Subject.objects.select_for_update().filter(
            dataset=dataset, code__in=used_subjects(result.splits) | {g["subject"] for g in files.gallery}
        ).order_by("pk")
        gone = {code for code, at in rows.values_list("code", "consent_withdrawn_at") if at is not None}
        gallery, _ = drop_pictures(files.gallery, gone)
        # A base trained with a withdrawn subject passes the mark on.
        withdrawn = sorted(gone | set(base_version.withdrawn_subjects if base_version else []))
        mv = ModelVersion.objects.create(
            organisation=org, version=f"{name}@{number}", name=name, number=number, arch=trained.base.arch,
            labels=list(VALENCE_CLASSES), preprocess=trained.base.spec.to_dict(), base=base_version, dataset=dataset,
            dataset_name=dataset.name, hyperparameters=files.hyperparameters, metrics=files.metrics,
            onnx_file=str(files.onnx.relative_to(media)), weights_file=str(files.weights.relative_to(media)),
            card_file=str(files.card.relative_to(media)), sha256=files.sha256, size=files.onnx.stat().st_size,
            created_by=job.created_by, rejected_reasons=result.rejected, withdrawn_subjects=withdrawn,
            status=ModelVersion.Status.REJECTED if result.rejected else ModelVersion.Status.CANDIDATE,
        )
        _update(job.pk, status=FineTuneJob.Status.SUCCEEDED, finished_at=timezone.now(), model_version=mv,
                withdrawn_subjects=withdrawn,
                results={**result.summary(), "training_seconds": round(trained.seconds, 1)}, gradcam=gallery)
    return mv


def succeeded(job: FineTuneJob, version: ModelVersion, log_line: JobLog) -> None:
    """Store the log of a job `register` ended, and tell the watchers."""
    _update(job.pk, log=log_line.text())
    push(job.pk, {"status": "succeeded", "model_version": version.version})


def fail(job: FineTuneJob, reason: str, log_line: JobLog) -> str:
    """End the job as failed with `reason` (a sentence, kept to 2,000 characters); the
    reason as stored."""
    reason = reason[:2000]
    _update(job.pk, status=FineTuneJob.Status.FAILED, error=reason, finished_at=timezone.now(), log=log_line.text())
    push(job.pk, {"status": "failed", "error": reason})
    return reason


def cancelled(job: FineTuneJob, log_line: JobLog) -> None:
    """End the job as cancelled (its cancel was requested while it ran)."""
    log_line("cancelled")
    _update(job.pk, status=FineTuneJob.Status.CANCELLED, finished_at=timezone.now(), log=log_line.text())
    push(job.pk, {"status": "cancelled"})
