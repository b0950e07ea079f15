"""Fine-tune jobs, the model registry and deployments of models to a site's boards."""
from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.accounts.models import Organisation


class ModelVersion(models.Model):
    """A trained model with its lineage. organisation=None is a model shipped with
    Affectwatch (edge_agent/models/), which every organisation may use."""

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        PROMOTED = "promoted", "Promoted"
        ARCHIVED = "archived", "Archived"
        REJECTED = "rejected", "Rejected"  # failed the quality gate (rejected_reasons)

    organisation = models.ForeignKey(Organisation, null=True, blank=True, on_delete=models.CASCADE,
                                     related_name="model_versions")
    version = models.CharField(max_length=100, unique=True, help_text="name@number, as agents report it")
    name = models.CharField(max_length=90)
    number = models.PositiveIntegerField()
    arch = models.CharField(max_length=64, default="liexnet")
    labels = models.JSONField(default=list)
    preprocess = models.JSONField(default=dict)
    base = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="derived")
    dataset = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="model_versions")
    dataset_name = models.CharField(max_length=120, blank=True, help_text="kept if the data set is deleted")
    hyperparameters = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    # Paths relative to MEDIA_ROOT, or "shipped:<file>" under edge_agent/models/.
    onnx_file = models.CharField(max_length=300)
    weights_file = models.CharField(max_length=300, blank=True)
    card_file = models.CharField(max_length=300, blank=True)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    rejected_reasons = models.JSONField(default=list, blank=True,
                                        help_text="why the quality gate rejected it (validation subjects only)")
    withdrawn_subjects = models.JSONField(
        default=list, blank=True, help_text="subjects it was trained or selected with who withdrew consent since")
    override_note = models.TextField(blank=True, help_text="who used it despite its blockers, when and why")
    promoted_at = models.DateTimeField(null=True, blank=True)
    promoted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.version

    @property
    def shipped(self):
        return self.organisation_id is None

    @property
    def blockers(self) -> list[str]:
        """Why this version must not be promoted or deployed without an override."""
        out = [f"rejected by the quality gate: {r}" for r in self.rejected_reasons or []]
        if self.withdrawn_subjects:
            out.append("trained with subject(s) who withdrew consent: " + ", ".join(self.withdrawn_subjects))
        return out

    @property
    def download_url(self):
        return f"/api/v1/device-models/{self.version}/"


class FineTuneJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="finetune_jobs")
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="finetune_jobs")
    base = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                             help_text="empty: the shipped FER2013 LiExNet")
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    cancel_requested = models.BooleanField(default=False)
    progress = models.JSONField(default=dict, blank=True, help_text="the latest epoch's report")
    history = models.JSONField(default=list, blank=True, help_text="every epoch's report")
    results = models.JSONField(default=dict, blank=True)
    gradcam = models.JSONField(default=list, blank=True, help_text='[{"file", "subject", "true", ...}]')
    withdrawn_subjects = models.JSONField(
        default=list, blank=True, help_text="subjects it was trained or selected with who withdrew consent since")
    error = models.TextField(blank=True)
    # Set with FAILED when the job's worker went silent (reaped): a redelivered task may
    # still retry it. State is in fields, never read back from `error`'s wording.
    worker_lost = models.BooleanField(default=False)
    log = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid running it")
    worker_pid = models.IntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"fine-tune #{self.pk} ({self.status})"

    @property
    def finished(self):
        return self.status not in self.ACTIVE

    @property
    def artifact_dir(self):
        return f"training/{self.organisation_id}/job-{self.pk}"


class Deployment(models.Model):
    """A model version rolled out to a site's boards: one canary board first; when it
    reports the new version in a heartbeat, the rest."""

    class Status(models.TextChoices):
        CANARY = "canary", "Canary"
        ROLLING_OUT = "rolling_out", "Rolling out"
        COMPLETE = "complete", "Complete"
        ROLLED_BACK = "rolled_back", "Rolled back"
        SUPERSEDED = "superseded", "Superseded"

    ACTIVE = (Status.CANARY, Status.ROLLING_OUT, Status.COMPLETE)

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="deployments")
    site = models.ForeignKey("sites.Site", on_delete=models.CASCADE, related_name="deployments")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    canary = models.ForeignKey("sites.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANARY)
    previous = models.JSONField(default=dict, blank=True,
                                help_text="per device id: the desired model before this deployment")
    events = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def note(self, text):
        self.events = [*self.events, {"at": timezone.now().isoformat(), "event": text}]
