"""Alert rules per site and the alerts they open.

A rule opens an alert when, over its window, the site's negative share is above its
threshold with at least `min_detections` detections. An alert stays until a person
resolves it — the evaluation never resolves one itself, it only notes when the
condition cleared — and while a rule has an open or acknowledged alert it opens no other.
"""
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.sites.models import Site


class AlertRule(models.Model):
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=100)
    threshold_pct = models.FloatField(
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Open an alert when the negative share is above this percentage.",
    )
    window_minutes = models.PositiveIntegerField(
        default=15, validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text="The share is measured over this many most recent minutes.",
    )
    min_detections = models.PositiveIntegerField(
        default=50, validators=[MinValueValidator(1)],
        help_text="Fewer classified faces than this in the window never open an alert.",
    )
    enabled = models.BooleanField(default=True)
    emails = models.JSONField(default=list, blank=True, help_text="Addresses e-mailed when an alert opens.")
    webhook_url = models.URLField(max_length=500, blank=True)
    # A signing key, not a password: we need it in the clear to sign each delivery.
    # It is shown once, when made, and never returned by the API afterwards.
    webhook_secret = models.CharField(max_length=100, editable=False)
    cooldown_minutes = models.PositiveIntegerField(
        default=30, validators=[MaxValueValidator(7 * 24 * 60)],
        help_text="After an alert is resolved, wait this long before opening another.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site__name", "name"]
        constraints = [models.UniqueConstraint(fields=["site", "name"], name="unique_alert_rule_name_per_site")]

    def __str__(self):
        return f"{self.site} / {self.name}"

    @property
    def webhook_secret_hint(self):
        return f"…{self.webhook_secret[-4:]}" if self.webhook_secret else ""


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


ACTIVE_STATES = (AlertState.OPEN, AlertState.ACKNOWLEDGED)


class Alert(models.Model):
    """One breach of a rule. The rule's numbers are copied in, so the alert still reads
    right after the rule is edited or deleted."""

    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="alerts")
    rule_name = models.CharField(max_length=100)
    threshold_pct = models.FloatField()
    opened_at = models.DateTimeField(default=timezone.now)
    value_pct = models.FloatField(help_text="The negative share that opened the alert.")
    detections = models.PositiveIntegerField()
    negative = models.PositiveIntegerField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.OPEN)
    cleared_at = models.DateTimeField(null=True, blank=True,
                                      help_text="When the evaluation last saw the condition stop holding.")
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, max_length=2000)

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [models.Index(fields=["site", "state", "opened_at"])]
        constraints = [
            # Two evaluations racing (two beat processes, a slow tick) still open one.
            models.UniqueConstraint(fields=["rule"], condition=Q(state__in=["open", "acknowledged"]),
                                    name="one_active_alert_per_rule"),
        ]

    def __str__(self):
        return f"{self.rule_name} at {self.site}: {self.value_pct:.1f}% ({self.state})"

    @property
    def active(self):
        return self.state in ACTIVE_STATES


class Delivery(models.Model):
    """One notification of an alert (an e-mail or a webhook call) and how it went."""

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    event = models.CharField(max_length=32)
    target = models.CharField(max_length=500, help_text="The address or URL.")
    payload = models.JSONField(default=dict, blank=True, help_text="The webhook body, fixed when first made.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
