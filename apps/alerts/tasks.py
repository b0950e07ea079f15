import logging
import random
import smtplib

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from . import evaluation, notify, webhooks
from .models import Alert, Delivery

log = logging.getLogger(__name__)


@shared_task
def evaluate_alert_rules():
    """Every minute (beat): evaluate all enabled rules against the site rollups."""
    stats = evaluation.evaluate_all()
    log.info("alert rules evaluated: %s", stats)
    return stats


@shared_task
def notify_alert(alert_id, event):
    """Per alert and event: record the deliveries it needs and send each on its own."""
    alert = Alert.objects.select_related("rule", "site").filter(pk=alert_id).first()
    if alert is None:
        return 0
    deliveries = notify.plan_deliveries(alert, event)
    for d in deliveries:
        (send_alert_email if d.channel == Delivery.Channel.EMAIL else send_alert_webhook).delay(d.pk)
    return len(deliveries)


def backoff_s(retries: int) -> float:
    """30 s, 1, 2, 4, 8 min… (capped at an hour) with jitter, so receivers coming back
    up are not hit by every sender at once."""
    base = settings.AFFECTWATCH["WEBHOOK_RETRY_BASE_S"]
    delay = min(base * 2**retries, 3600)
    return delay + random.uniform(0, delay / 4)


def _deliver(task, delivery_id, send, retryable):
    delivery = Delivery.objects.select_related("alert__site", "alert__rule").filter(pk=delivery_id).first()
    if delivery is None or delivery.status == Delivery.Status.SENT:
        return
    Delivery.objects.filter(pk=delivery.pk).update(attempts=delivery.attempts + 1)
    try:
        send(delivery)
    except retryable as exc:
        error = str(exc)[:500] or exc.__class__.__name__
        if task.request.retries < settings.AFFECTWATCH["NOTIFY_MAX_RETRIES"]:
            Delivery.objects.filter(pk=delivery.pk).update(last_error=error)
            log.warning("delivery %s failed (%s), retrying", delivery.pk, error)
            raise task.retry(countdown=backoff_s(task.request.retries), exc=exc)
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, last_error=error)
        log.error("delivery %s failed for good: %s", delivery.pk, error)
        return
    except webhooks.WebhookRefused as exc:
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, last_error=str(exc)[:500])
        log.error("delivery %s refused: %s", delivery.pk, exc)
        return
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.SENT, delivered_at=timezone.now(),
                                                   last_error="")


@shared_task(bind=True, max_retries=None, acks_late=True)
def send_alert_webhook(self, delivery_id):
    """POST one signed webhook; 5xx, 429, timeouts and refused connections are retried."""
    _deliver(self, delivery_id, notify.call_webhook, webhooks.Retryable)


@shared_task(bind=True, max_retries=None, acks_late=True)
def send_alert_email(self, delivery_id):
    """Send one alert e-mail to one recipient; a mail server that is down is retried."""
    _deliver(self, delivery_id, notify.send_email, (smtplib.SMTPException, OSError))
