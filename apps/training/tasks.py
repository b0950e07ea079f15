"""The fine-tune job on a Celery worker (queue `training`, see CELERY_TASK_ROUTES): a
thin caller of the job services (`jobs`: claim, heartbeat, progress, register, the
endings) and the domain steps (`finetuning`: load, train, export).

Crash safety: the task is acknowledged late and re-queued if its worker process dies
(CELERY_TASK_ACKS_LATE, REJECT_ON_WORKER_LOST). A redelivered job that was running
counts as a new attempt, up to TRAINING_MAX_ATTEMPTS, then fails with the reason
(`jobs.claim`). While it runs, a thread stamps `heartbeat_at`; if the whole worker
vanishes, `jobs.reap_if_stale` fails the job on the next look at it (page, API,
WebSocket, or the watchdog task). Torch is imported inside the steps so the worker's
parent process never holds it (forking after OpenMP starts is unsafe).
"""
from __future__ import annotations

import logging
import traceback

from celery import shared_task
from django.db import close_old_connections

from . import finetuning, jobs

log = logging.getLogger(__name__)


@shared_task(name="apps.training.tasks.run_finetune", acks_late=True, reject_on_worker_lost=True)
def run_finetune(job_id: int):
    """Run fine-tune job `job_id`: its registered version's name, or how it ended."""
    close_old_connections()
    job = jobs.claim(job_id)
    if job is None:
        return "skipped"
    log_line, history = jobs.JobLog(job.log), []
    with jobs.Heartbeat(job.pk) as beat:
        try:
            trained = finetuning.train(job, log_line, should_stop=beat.cancel.is_set,
                                       on_progress=lambda p: jobs.report_progress(job, p, history))
            version = jobs.register(job, trained, log_line)
        except finetuning.Cancelled:
            jobs.cancelled(job, log_line)
            return "cancelled"
        except Exception as exc:  # noqa: BLE001 - every failure ends the job with its reason
            log.exception("fine-tune job %s failed", job_id)
            log_line(traceback.format_exc(limit=6))
            jobs.fail(job, f"{type(exc).__name__}: {exc}", log_line)
            return "failed"
    jobs.succeeded(job, version, log_line)
    return version.version


@shared_task(name="apps.training.watchdog.fail_stale_jobs")
def fail_stale_jobs():
    """Fails running jobs whose worker went silent. Named outside `apps.training.tasks`
    so it runs on the default queue even when every training worker is gone."""
    return jobs.reap_stale_jobs()
