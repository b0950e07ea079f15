"""The fine-tune job on a Celery worker (queue `training`, see CELERY_TASK_ROUTES).

Crash safety: the task is acknowledged late and re-queued if its worker process dies
(CELERY_TASK_ACKS_LATE, REJECT_ON_WORKER_LOST). A redelivered job that was running
counts as a new attempt, up to TRAINING_MAX_ATTEMPTS, then fails with the reason. While it runs,
a thread stamps `heartbeat_at`; if the whole worker vanishes, `jobs.reap_if_stale`
fails the job on the next look at it (page, API, WebSocket, or the watchdog task).
Torch is imported inside the task so the worker's parent process never holds it
(forking after OpenMP starts is unsafe).
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
import traceback
from pathlib import Path

from celery import shared_task
from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone

from .jobs import max_attempts
from .models import FineTuneJob, ModelVersion

log = logging.getLogger(__name__)
HEARTBEAT_S = 3.0
GRADCAM_IMAGES = 12
MAX_HISTORY = 5000


def job_group(job_id) -> str:
    return f"training-job-{job_id}"


def push(job_id, payload: dict):
    """Best effort: with Redis the page hears it at once; without, it polls the row."""
    try:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(job_group(job_id), {"type": "job.update", "job": payload})
    except Exception:  # noqa: BLE001
        log.debug("channel layer push failed", exc_info=True)


def _claim(job_id) -> FineTuneJob | None:
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


class _Heartbeat(threading.Thread):
    """Stamps heartbeat_at and watches for a cancel request."""

    def __init__(self, job_id):
        super().__init__(daemon=True, name=f"job-{job_id}-heartbeat")
        self.job_id = job_id
        self.cancel = threading.Event()
        self.done = threading.Event()

    def run(self):
        try:
            while not self.done.wait(HEARTBEAT_S):
                try:
                    FineTuneJob.objects.filter(pk=self.job_id).update(heartbeat_at=timezone.now())
                    if FineTuneJob.objects.filter(pk=self.job_id, cancel_requested=True).exists():
                        self.cancel.set()
                except Exception:  # noqa: BLE001 - a database hiccup: try again next beat
                    log.warning("heartbeat of job %s failed; retrying", self.job_id, exc_info=True)
                    connection.close()
        finally:
            connection.close()


def _update(job_id, **fields):
    fields["heartbeat_at"] = timezone.now()
    FineTuneJob.objects.filter(pk=job_id).update(**fields)


@shared_task(name="apps.training.tasks.run_finetune", acks_late=True, reject_on_worker_lost=True)
def run_finetune(job_id: int):
    close_old_connections()
    job = _claim(job_id)
    if job is None:
        return "skipped"
    beat = _Heartbeat(job_id)
    beat.start()
    lines = [job.log] if job.log else []

    def log_line(text):
        lines.append(f"{timezone.now():%H:%M:%S} {text}\n")

    try:
        version = _run(job, beat, log_line)
    except _Cancelled:
        log_line("cancelled")
        _update(job_id, status=FineTuneJob.Status.CANCELLED, finished_at=timezone.now(), log="".join(lines)[-20000:])
        push(job_id, {"status": "cancelled"})
        return "cancelled"
    except Exception as exc:  # noqa: BLE001 - every failure ends the job with its reason
        log.exception("fine-tune job %s failed", job_id)
        log_line(traceback.format_exc(limit=6))
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        _update(job_id, status=FineTuneJob.Status.FAILED, error=reason, finished_at=timezone.now(),
                log="".join(lines)[-20000:])
        push(job_id, {"status": "failed", "error": reason})
        return "failed"
    finally:
        beat.done.set()
        beat.join(timeout=10)
    _update(job_id, log="".join(lines)[-20000:])
    push(job_id, {"status": "succeeded", "model_version": version.version})
    return version.version


class _Cancelled(Exception):
    pass


def _load_images(job, spec):
    import numpy as np

    from edge_agent.labels import VALENCE_CLASSES
    from workers.data.decode import decode_image

    images, labels, workers, subjects = [], [], [], []
    for s in job.dataset.samples.select_related("subject").order_by("id"):
        if not s.subject.has_consent:  # consent withdrawn since the import
            continue
        with s.image.open("rb") as f:
            img = decode_image(f.read(), spec)
        if img is None:
            raise ValueError(f"sample {s.pk} ({s.original_name}) no longer decodes")
        images.append(img)
        labels.append(VALENCE_CLASSES.index(s.label))
        workers.append(s.subject.is_worker)
        subjects.append(s.subject.code)
    if not images:
        raise ValueError("the data set has no images with consent")
    return np.stack(images), np.array(labels), np.array(workers, dtype=bool), np.array(subjects)


def _run(job: FineTuneJob, beat: _Heartbeat, log_line) -> ModelVersion:
    import json

    import torch

    from workers import finetune as ft

    from .registry import artifact_path, shipped_version

    threads = settings.AFFECTWATCH["TRAINING_THREADS"]
    if threads:
        torch.set_num_threads(threads)
    base_version = job.base or shipped_version()
    if job.base and job.base.weights_file:
        base = ft.load_base(artifact_path(job.base.weights_file))
    else:
        card = {"preprocess": base_version.preprocess, "labels": base_version.labels} if base_version else None
        if base_version and base_version.card_file and artifact_path(base_version.card_file).is_file():
            try:
                card = {**json.loads(artifact_path(base_version.card_file).read_text()), **card}
            except ValueError:
                pass
        base = ft.load_base(card=card)
    log_line(f"base model: {base_version.version if base_version else 'LiExNet'} (weights: {base.source})")
    params = ft.FinetuneParams(**job.params)
    images, labels, is_worker, subjects = _load_images(job, base.spec)
    log_line(f"{len(images)} images of {len(set(subjects))} subjects ({int(is_worker.sum())} images of workers)")

    history: list[dict] = []

    def on_progress(p):
        p = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in p.items()}
        history.append(p)
        _update(job.pk, progress=p, history=history[-MAX_HISTORY:])
        push(job.pk, {"status": "running", "progress": p})

    t0 = time.time()
    try:
        result = ft.finetune(images, labels, is_worker, subjects, base, params, on_progress=on_progress,
                             should_stop=beat.cancel.is_set, log_fn=log_line)
    except ft.Cancelled:
        raise _Cancelled() from None
    if beat.cancel.is_set():
        raise _Cancelled()
    train_seconds = time.time() - t0
    log_line(f"trained in {train_seconds:.1f}s; w = {result.best_w} chosen on validation subjects")
    for reason in result.rejected:
        log_line(f"quality gate: {reason}")

    # Two jobs of one data set finishing together may pick the same number: the loser
    # of the unique constraint exports again under the next one.
    for attempt in range(5):
        try:
            mv = _register(job, result, base, base_version, params, images, labels, is_worker, subjects, train_seconds)
            break
        except IntegrityError:
            if attempt == 4:
                raise
            log_line("the version number was taken meanwhile; trying the next one")
        finally:
            if not FineTuneJob.objects.filter(pk=job.pk, status=FineTuneJob.Status.SUCCEEDED).exists():
                # No registered job lists them: pictures of faces nobody could find again go.
                shutil.rmtree(Path(settings.MEDIA_ROOT) / job.artifact_dir / "gradcam", ignore_errors=True)
    log_line(f"registered {mv.version} ({mv.size} bytes, sha256 {mv.sha256[:12]}…)")
    return mv


def _register(job, result, base, base_version, params, images, labels, is_worker, subjects, train_seconds):
    """Export, check and describe the trained model, and add it to the registry."""
    from edge_agent.classifier import load_model
    from edge_agent.labels import VALENCE_CLASSES
    from workers import finetune as ft
    from workers.export import parity_check
    from workers.gradcam import save_gallery

    from apps.datasets.models import Subject

    from .registry import next_version_name, sha256_of
    from .withdrawal import drop_pictures, used_subjects

    org, dataset = job.organisation, job.dataset
    name, number = next_version_name(org, dataset)
    version = f"{name}@{number}"
    rel = job.artifact_dir
    out = Path(settings.MEDIA_ROOT) / rel
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = ft.export(result.model, out / "model.onnx", base, version, dataset.name)
    parity = parity_check(result.model, onnx_path, base.spec, images[:32])
    clf = load_model(onnx_path)  # exactly what a board does before it swaps a model in
    if list(clf.labels) != list(VALENCE_CLASSES):
        raise ValueError(f"exported model has labels {clf.labels}")
    weights_path = ft.save_weights(result.model, out / "weights.pt", base, params,
                                   {"dataset": dataset.name, "version": version, "base": base.source})

    # Grad-CAM on images the registered model never trained on: the holdout's test
    # subjects, or the validation subjects of the model trained after k-fold.
    last = result.splits[-1]
    shown = last["test_subjects"] or last["val_subjects"]
    cam_idx = _gallery_indices(shown, subjects, labels, GRADCAM_IMAGES)
    gallery = save_gallery(result.model, images[cam_idx], labels[cam_idx], VALENCE_CLASSES, base.spec,
                           out / "gradcam", GRADCAM_IMAGES)
    for item, i in zip(gallery, cam_idx):  # the subject, so a withdrawal finds their pictures
        item["file"], item["subject"] = f"{rel}/gradcam/{item['file']}", str(subjects[i])

    test = result.test
    metrics = {k: test[k] for k in ("accuracy", "balanced_accuracy", "negative_recall", "auc", "macro_f1",
                                    "pearson_r", "accuracy_std")}
    chosen = next(r for r in result.runs if r["w"] == result.best_w)
    tested = sorted({s for sp in result.splits for s in sp["test_subjects"]})
    kfold = params.split == "kfold"
    metrics.update({
        "w": result.best_w, "base": result.base, "onnx_parity": parity,
        "validation": {k: chosen[k] for k in ("accuracy", "balanced_accuracy", "negative_recall", "auc", "macro_f1")},
        "test_subjects": tested,
        "test_set": (f"a {len(result.splits) - 1}-fold estimate: each of {sum(sp['n_test'] for sp in result.splits):,} "
                     f"images of subjects {', '.join(tested)} scored once by the fold's model that never saw it; "
                     "this version was then trained on all subjects, so no held-out score of it exists"
                     if kfold else
                     f"{sum(sp['n_test'] for sp in result.splits):,} images of test subjects {', '.join(tested)}, "
                     "scored once after every choice was made on validation subjects"),
    })
    hyper = {**job.params, "chosen_w": result.best_w}
    digest = sha256_of(onnx_path)
    card_path = ft.write_card(
        out / "card.json", version=version, arch=base.arch, labels=list(VALENCE_CLASSES),
        preprocess=base.spec.to_dict(), base_model=base_version.version if base_version else None,
        base_weights=base.source, dataset={"id": dataset.pk, "name": dataset.name, "images": int(len(images)),
                                           "subjects": int(len(set(subjects))),
                                           "worker_images": int(is_worker.sum())},
        hyperparameters=hyper, metrics=metrics,
        sweep_on_validation=[{k: r[k] for k in ("w", "accuracy", "negative_recall", "auc", "macro_f1", "pearson_r")}
                             for r in result.runs],
        quality_gate={"passed": not result.rejected, "reasons": result.rejected},
        splits=result.splits, training_seconds=round(train_seconds, 1), job=job.pk, sha256=digest,
        created_at=timezone.now().isoformat(),
        intended_use="3-class valence (negative / neutral / positive) of face crops for aggregate, "
                     "privacy-preserving stress monitoring; not for judging individuals.",
    )
    media = Path(settings.MEDIA_ROOT)
    with transaction.atomic():
        # A subject who withdrew while the job ran: their pictures go, the version is
        # marked. (Subject rows are locked before the job's, as a withdrawal does.)
        rows = Subject.objects.select_for_update().filter(
            dataset=dataset, code__in=used_subjects(result.splits) | {g["subject"] for g in gallery}).order_by("pk")
        gone = {code for code, at in rows.values_list("code", "consent_withdrawn_at") if at is not None}
        gallery, _ = drop_pictures(gallery, gone)
        # A base trained with a withdrawn subject passes the mark on.
        withdrawn = sorted(gone | set(base_version.withdrawn_subjects if base_version else []))
        mv = ModelVersion.objects.create(
            organisation=org, version=version, name=name, number=number, arch=base.arch,
            labels=list(VALENCE_CLASSES), preprocess=base.spec.to_dict(), base=base_version, dataset=dataset,
            dataset_name=dataset.name, hyperparameters=hyper, metrics=metrics,
            onnx_file=str(onnx_path.relative_to(media)), weights_file=str(weights_path.relative_to(media)),
            card_file=str(card_path.relative_to(media)), sha256=digest, size=onnx_path.stat().st_size,
            created_by=job.created_by, rejected_reasons=result.rejected, withdrawn_subjects=withdrawn,
            status=ModelVersion.Status.REJECTED if result.rejected else ModelVersion.Status.CANDIDATE,
        )
        _update(job.pk, status=FineTuneJob.Status.SUCCEEDED, finished_at=timezone.now(), model_version=mv,
                withdrawn_subjects=withdrawn,
                results={**result.summary(), "training_seconds": round(train_seconds, 1)}, gradcam=gallery)
    return mv


def _gallery_indices(shown_subjects, subjects, labels, limit):
    """Up to `limit` image indices of `shown_subjects`, a few of each class first."""
    import numpy as np

    idx = np.flatnonzero(np.isin(subjects, shown_subjects))
    picked, per_class = [], max(1, limit // 3)
    for c in range(3):
        picked += list(idx[labels[idx] == c][:per_class])
    rest = [i for i in idx if i not in set(picked)]
    return np.array((picked + rest)[:limit], dtype=np.int64)


@shared_task(name="apps.training.watchdog.fail_stale_jobs")
def fail_stale_jobs():
    """Fails running jobs whose worker went silent. Named outside `apps.training.tasks`
    so it runs on the default queue even when every training worker is gone."""
    from .jobs import reap_stale_jobs

    return reap_stale_jobs()
