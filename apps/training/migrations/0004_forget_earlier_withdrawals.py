"""Withdrawals made before withdrawal reached derived data: their subjects' Grad-CAM
pictures are deleted and the jobs and versions trained with them marked, as
`apps/training/withdrawal.forget_subject` does for withdrawals from now on."""
from pathlib import Path

from django.conf import settings
from django.db import migrations


def forget_earlier_withdrawals(apps, schema_editor):
    Subject = apps.get_model("datasets", "Subject")
    Job = apps.get_model("training", "FineTuneJob")
    Version = apps.get_model("training", "ModelVersion")
    for subject in Subject.objects.filter(consent_withdrawn_at__isnull=False):
        code = subject.code
        for job in Job.objects.filter(dataset_id=subject.dataset_id):
            # Items from before this release do not say whose face they show: all go.
            keep = [g for g in job.gradcam or [] if g.get("subject") and g["subject"] != code]
            for g in job.gradcam or []:
                if g not in keep:
                    (Path(settings.MEDIA_ROOT) / g["file"]).unlink(missing_ok=True)
            splits = (job.results or {}).get("splits", [])
            used = any(code in sp.get("train_subjects", []) + sp.get("val_subjects", []) for sp in splits)
            if used and code not in job.withdrawn_subjects:
                job.withdrawn_subjects = [*job.withdrawn_subjects, code]
            job.gradcam = keep
            job.save(update_fields=["gradcam", "withdrawn_subjects"])
            queue = [job.model_version_id] if used and job.model_version_id else []
            while queue:  # the version and every version fine-tuned from it
                version = Version.objects.get(pk=queue.pop())
                if code not in version.withdrawn_subjects:
                    version.withdrawn_subjects = [*version.withdrawn_subjects, code]
                    version.save(update_fields=["withdrawn_subjects"])
                queue += list(Version.objects.filter(base_id=version.pk).values_list("pk", flat=True))


class Migration(migrations.Migration):

    dependencies = [
        ("training", "0003_job_worker_lost"),
        ("datasets", "0001_initial"),
    ]

    operations = [migrations.RunPython(forget_earlier_withdrawals, migrations.RunPython.noop)]
