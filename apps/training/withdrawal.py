"""A subject's withdrawal of consent, as it reaches fine-tune jobs and the registry:
pictures derived from their images are deleted, and jobs and model versions trained or
selected with them (and versions fine-tuned from those) are marked, which blocks their
promotion and deployment (`ModelVersion.blockers`)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction

from .models import Deployment, FineTuneJob, ModelVersion
from .rollout import rollback


def used_subjects(splits: list[dict]) -> set[str]:
    """Subjects whose images trained a job's models or made one of its choices."""
    return {code for sp in splits for side in ("train_subjects", "val_subjects") for code in sp.get(side, [])}


def drop_pictures(gallery: list[dict], codes: set[str]) -> tuple[list[dict], list[str]]:
    """(kept items, deleted files): the Grad-CAM items of `codes`, and items that do not
    say whose face they show (jobs from before items named it), deleted after commit."""
    keep, gone = [], []
    for item in gallery or []:
        if item.get("subject") and item["subject"] not in codes:
            keep.append(item)
            continue
        gone.append(item["file"])
        path = Path(settings.MEDIA_ROOT) / item["file"]
        transaction.on_commit(lambda p=path: p.unlink(missing_ok=True))
    return keep, gone


def mark_version(mv: ModelVersion, codes: list[str], marked: list[str]) -> None:
    """Add `codes` to mv.withdrawn_subjects, and to every version fine-tuned from it; roll
    back their deployments still in progress or complete, so boards return to what they
    ran before (a deployed model trained with the subject does not stay in use)."""
    new = [c for c in codes if c not in mv.withdrawn_subjects]
    if new:
        mv.withdrawn_subjects = [*mv.withdrawn_subjects, *new]
        mv.save(update_fields=["withdrawn_subjects"])
        marked.append(mv.version)
        for dep in Deployment.objects.filter(model_version=mv, status__in=Deployment.ACTIVE):
            rollback(dep, None, reason=f"trained with subject(s) {', '.join(new)}, who withdrew consent")
            marked.append(f"deployment #{dep.pk} at {dep.site.name} (rolled back)")
    for child in mv.derived.all():
        mark_version(child, codes, marked)


def forget_subject(subject) -> dict:
    """Receiver of `apps.datasets.services.consent_withdrawn` (inside its transaction)."""
    code, deleted, marked = subject.code, [], []
    for job in FineTuneJob.objects.select_for_update(of=("self",)).filter(dataset_id=subject.dataset_id).select_related(
            "model_version"):
        keep, gone = drop_pictures(job.gradcam, {code})
        fields = []
        if gone:
            job.gradcam = keep
            deleted += gone
            fields.append("gradcam")
        if code in used_subjects((job.results or {}).get("splits", [])):
            if code not in job.withdrawn_subjects:
                job.withdrawn_subjects = [*job.withdrawn_subjects, code]
                fields.append("withdrawn_subjects")
                marked.append(f"fine-tune #{job.pk}")
            if job.model_version:
                mark_version(job.model_version, [code], marked)
        if fields:
            job.save(update_fields=fields)
    return {"deleted_files": deleted, "marked": marked}
