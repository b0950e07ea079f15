"""What the data set pages and the API both do to subjects and samples (one path, in a
transaction, audited). Views and API views stay thin callers of these."""
from __future__ import annotations

import django.dispatch
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from apps.accounts.access import audit

from .models import Subject

# Sent inside the withdrawal's transaction, after the subject's samples are gone. A
# receiver deletes what it derived from the subject's images and marks what was trained
# with them; it returns {"deleted_files": [...], "marked": [...]} for the audit record.
# (apps.training answers it: the datasets app does not import the training app.)
consent_withdrawn = django.dispatch.Signal()


def delete_samples(samples) -> int:
    """Delete sample rows; their image files go once the transaction commits.
    Returns how many rows were deleted."""
    names = list(samples.values_list("image", flat=True))
    samples.delete()
    for name in names:
        transaction.on_commit(lambda n=name: default_storage.delete(n))
    return len(names)


def withdraw_consent(subject: Subject, request_or_user) -> dict:
    """The subject withdrew consent: their images and everything derived from them are
    deleted, models trained or selected with them are marked, the subject's record stays
    (with the withdrawal time). Returns what was done, as the audit event records it:
    {"deleted_samples": n, "deleted_files": [...], "marked": [...]}."""
    with transaction.atomic():
        subject = Subject.objects.select_for_update().get(pk=subject.pk)
        done = {"deleted_samples": delete_samples(subject.samples.all()), "deleted_files": [], "marked": []}
        if subject.consent_withdrawn_at is None:
            subject.consent_withdrawn_at = timezone.now()
            subject.save(update_fields=["consent_withdrawn_at"])
        for _, answer in consent_withdrawn.send(sender=Subject, subject=subject):
            for key in ("deleted_files", "marked"):
                done[key] += (answer or {}).get(key, [])
        audit(request_or_user, "subject.withdraw_consent", subject, organisation=subject.dataset.organisation,
              dataset=subject.dataset_id, **done)
    return done
