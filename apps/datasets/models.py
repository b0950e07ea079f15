"""Consented, labelled face images: data sets, their subjects and samples."""
from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.accounts.models import Organisation
from edge_agent.labels import VALENCE_CLASSES


class Label(models.TextChoices):
    NEGATIVE = "negative", "Negative"
    NEUTRAL = "neutral", "Neutral"
    POSITIVE = "positive", "Positive"


assert tuple(Label.values) == VALENCE_CLASSES  # the model's output order


class Dataset(models.Model):
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        unique_together = [("organisation", "name")]
        ordering = ["-created_at"]

    def __str__(self):
        return self.name


class Subject(models.Model):
    """A person whose face images are in a data set. No images are stored for a subject
    without a consent record (who recorded it, when it was given, what it covers)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="subjects")
    code = models.CharField(max_length=64, help_text="A pseudonym, e.g. S017; never a name.")
    is_worker = models.BooleanField(help_text="A working subject (weighted by w when fine-tuning).")
    consent_given_at = models.DateTimeField(null=True, blank=True)
    consent_scope = models.CharField(max_length=300, blank=True, help_text="What the subject agreed to.")
    consent_recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    consent_recorded_at = models.DateTimeField(null=True, blank=True)
    consent_withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        unique_together = [("dataset", "code")]
        ordering = ["code"]

    def __str__(self):
        return self.code

    @property
    def has_consent(self):
        return bool(self.consent_given_at and self.consent_scope and self.consent_withdrawn_at is None)


def sample_path(sample, filename):
    return f"datasets/{sample.dataset_id}/{sample.sha256[:2]}/{sample.sha256}{sample.extension}"


class Sample(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="samples")
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="samples")
    label = models.CharField(max_length=16, choices=Label.choices)
    image = models.FileField(upload_to=sample_path, max_length=300)
    sha256 = models.CharField(max_length=64)
    extension = models.CharField(max_length=8)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    context = models.CharField(max_length=200, blank=True, help_text="Capture context, e.g. 'line 3, night shift'.")
    original_name = models.CharField(max_length=300, blank=True)
    imported = models.ForeignKey("DatasetImport", null=True, blank=True, on_delete=models.SET_NULL, related_name="samples")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        unique_together = [("dataset", "sha256")]
        ordering = ["id"]
        indexes = [models.Index(fields=["dataset", "label"])]


class DatasetImport(models.Model):
    """One uploaded zip and what became of it. Rejected imports keep their per-file
    reasons and store no samples."""

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="imports")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    filename = models.CharField(max_length=300)
    size = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices)
    accepted = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text='[{"file": ..., "reason": ...}]')
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
