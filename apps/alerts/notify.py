"""What an alert's notifications say, and sending one.

Each recipient and each webhook call is a `Delivery`, sent by its own task, so a retry
repeats only what failed: nobody gets the same e-mail twice because a webhook was down.
E-mails go through Django's e-mail backend (settings.EMAIL_BACKEND); webhooks are JSON,
signed (see webhooks.py), with the same body on every attempt so receivers can
de-duplicate on `id`."""
import json
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMessage
from django.urls import reverse

from . import webhooks
from .models import Alert, Delivery

EVENTS = ("alert.opened", "alert.acknowledged", "alert.resolved")


def alert_url(alert: Alert) -> str:
    path = reverse("alerts:list") + f"?site={alert.site_id}&state=all#alert-{alert.pk}"
    return settings.AFFECTWATCH["PUBLIC_URL"].rstrip("/") + path


def _iso(value):
    return value.isoformat() if value else None


def alert_payload(alert: Alert) -> dict:
    return {
        "id": alert.pk,
        "state": alert.state,
        "site": {"id": alert.site_id, "name": alert.site.name, "slug": alert.site.slug},
        "rule": {"id": alert.rule_id, "name": alert.rule_name, "threshold_pct": alert.threshold_pct},
        "value_pct": alert.value_pct,
        "detections": alert.detections,
        "negative": alert.negative,
        "window_start": _iso(alert.window_start),
        "window_end": _iso(alert.window_end),
        "opened_at": _iso(alert.opened_at),
        "acknowledged_at": _iso(alert.acknowledged_at),
        "resolved_at": _iso(alert.resolved_at),
        "note": alert.note,
        "url": alert_url(alert),
    }


def plan_deliveries(alert: Alert, event: str) -> list[Delivery]:
    """The deliveries an event of an alert calls for: e-mails when it opens, the
    webhook (if any) for every event."""
    rule = alert.rule
    if rule is None:  # the rule was deleted; its settings went with it
        return []
    deliveries = []
    if event == "alert.opened":
        for address in rule.emails:
            deliveries.append(Delivery(alert=alert, channel=Delivery.Channel.EMAIL, event=event, target=address))
    if rule.webhook_url:
        delivery = Delivery(alert=alert, channel=Delivery.Channel.WEBHOOK, event=event, target=rule.webhook_url)
        deliveries.append(delivery)
    Delivery.objects.bulk_create(deliveries)
    for d in deliveries:
        if d.channel == Delivery.Channel.WEBHOOK:
            d.payload = {"id": f"dlv_{d.pk}", "event": event, "created_at": _iso(d.created_at),
                         "alert": alert_payload(alert)}
            d.save(update_fields=["payload"])
    return deliveries


def email_message(alert: Alert, to: str) -> EmailMessage:
    subject = f"[Affectwatch] {alert.site.name}: negative share {alert.value_pct:.0f}% ({alert.rule_name})"
    minutes = round((alert.window_end - alert.window_start).total_seconds() / 60)
    body = (
        f"Alert rule \"{alert.rule_name}\" at {alert.site.name} opened an alert.\n\n"
        f"Negative share: {alert.value_pct:.1f}% (threshold {alert.threshold_pct:g}%)\n"
        f"Detections: {alert.detections} in the {minutes} minutes up to "
        f"{alert.window_end.astimezone(ZoneInfo(alert.site.timezone)):%Y-%m-%d %H:%M %Z}\n\n"
        f"Acknowledge or resolve it here: {alert_url(alert)}\n\n"
        "These figures are aggregates over everyone seen at the site; they say nothing about one person.\n"
    )
    return EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [to])


def send_email(delivery: Delivery) -> None:
    email_message(delivery.alert, delivery.target).send(fail_silently=False)


def call_webhook(delivery: Delivery) -> int:
    rule = delivery.alert.rule
    if rule is None or not rule.webhook_url:
        raise webhooks.WebhookRefused("the rule or its webhook was removed")
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {"X-Affectwatch-Event": delivery.event, "X-Affectwatch-Delivery": delivery.payload.get("id", "")}
    # The URL and secret are read now, so a rule fixed after a failure is used on retry.
    return webhooks.post(rule.webhook_url, rule.webhook_secret, body, headers=headers)
