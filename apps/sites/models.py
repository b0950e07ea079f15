import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone as dj_timezone

from apps.accounts.models import Organisation


class Site(models.Model):
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="sites")
    name = models.CharField(max_length=200)
    slug = models.SlugField()
    timezone = models.CharField(max_length=64, default="UTC")
    created_at = models.DateTimeField(default=dj_timezone.now)

    class Meta:
        unique_together = [("organisation", "slug")]
        ordering = ["name"]

    def __str__(self):
        return self.name


class Zone(models.Model):
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="zones")
    name = models.CharField(max_length=200)

    class Meta:
        unique_together = [("site", "name")]
        ordering = ["name"]

    def __str__(self):
        return f"{self.site} / {self.name}"


class Device(models.Model):
    """An edge agent. It authenticates with a token of which only the hash is kept."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="devices")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="devices")
    zone = models.ForeignKey(Zone, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices")
    name = models.CharField(max_length=200)
    simulated = models.BooleanField(default=False, help_text="Fed by `edge_agent simulate`, not a camera.")
    token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    enrolled_at = models.DateTimeField(default=dj_timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # The last outage (no heartbeat for OFFLINE_AFTER): its minutes are released only
    # RELEASE_CATCH_UP after the board is back, when its outbox has had time to drain.
    offline_from = models.DateTimeField(null=True, blank=True)
    back_online_at = models.DateTimeField(null=True, blank=True)
    online = models.BooleanField(default=False)
    health = models.JSONField(default=dict, blank=True, help_text="The last heartbeat's report.")
    hardware = models.JSONField(default=dict, blank=True)
    model_version = models.CharField(max_length=100, blank=True, help_text="What the agent runs.")
    desired_config = models.JSONField(default=dict, blank=True)
    # The model the agent should run; set by deployments (apps.training).
    desired_model_version = models.CharField(max_length=100, blank=True)
    desired_model_url = models.CharField(max_length=300, blank=True)
    desired_model_sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["site__name", "name"]

    def __str__(self):
        return self.name

    @property
    def active(self):
        return self.revoked_at is None and self.token_hash is not None


class Camera(models.Model):
    """A camera of a device, named by the agent's config (e.g. `cam0`). It watches the
    device's zone: a board covers one zone."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="cameras")
    name = models.CharField(max_length=64)
    status = models.CharField(max_length=16, default="unknown")
    fps = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        unique_together = [("device", "name")]
        ordering = ["name"]

    def __str__(self):
        return f"{self.device} / {self.name}"


class EnrollmentCode(models.Model):
    """A one-time, expiring code a field tech types on a board to enroll it."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="enrollment_codes")
    zone = models.ForeignKey(Zone, null=True, blank=True, on_delete=models.SET_NULL)
    code_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=4, help_text="The code's last characters, to tell codes apart.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=dj_timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    device = models.OneToOneField(Device, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-created_at"]

    @property
    def state(self):
        if self.used_at:
            return "used"
        return "expired" if self.expires_at <= dj_timezone.now() else "open"
