from django.conf import settings
from django.db import models
from django.utils import timezone


class Organisation(models.Model):
    """A tenant. Everything a customer owns hangs off one organisation."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return self.name


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    SAFETY_OFFICER = "safety_officer", "Safety officer"
    RESEARCHER = "researcher", "Researcher"
    FIELD_TECH = "field_tech", "Field tech"
    API_CONSUMER = "api_consumer", "API consumer"


class Membership(models.Model):
    """A user's organisation, role and the sites they may see."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=32, choices=Role.choices)
    all_sites = models.BooleanField(default=False, help_text="Sees every site of the organisation.")
    sites = models.ManyToManyField("sites.Site", blank=True, related_name="members")

    def __str__(self):
        return f"{self.user} ({self.get_role_display()}, {self.organisation})"


class ApiScope(models.TextChoices):
    TELEMETRY_READ = "telemetry:read", "Read emotion trends and released minute counts"
    SITES_READ = "sites:read", "Read sites, zones, cameras and devices"
    DEVICES_WRITE = "devices:write", "Enroll, revoke and configure devices"
    ALERTS_READ = "alerts:read", "Read alerts"


class ApiToken(models.Model):
    """A token for another system. Only the SHA-256 of the secret is stored."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="The first characters, to recognise a token.")
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    @property
    def active(self):
        return self.revoked_at is None

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"


class AuditEvent(models.Model):
    """Who did what sensitive thing, when, from where."""

    organisation = models.ForeignKey(Organisation, null=True, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_label = models.CharField(max_length=200)
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at"]
