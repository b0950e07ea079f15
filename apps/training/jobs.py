"""Starting, cancelling and watching fine-tune jobs (the web side of the worker)."""
from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from apps.accounts.access import audit

from .models import FineTuneJob


def stale_after():
    """A running job's worker stamps heartbeat_at every few seconds; silence for longer
    than this (settings.AFFECTWATCH["TRAINING_STALE_AFTER"]) means the worker died
    (kill -9, out of memory, machine lost)."""
    return settings.AFFECTWATCH["TRAINING_STALE_AFTER"]


def max_attempts() -> int:
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
    qs = queryset if queryset is not None else FineTuneJob.objects.all()
    n = 0
    for job in qs.filter(status=FineTuneJob.Status.RUNNING):
        n += reap_if_stale(job).status == FineTuneJob.Status.FAILED
    return n
