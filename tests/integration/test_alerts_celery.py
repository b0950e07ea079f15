"""End to end across real processes: labels ingested, the evaluation task run by a real
Celery worker, the signed webhook received by a real HTTP server on 127.0.0.1, and the
e-mail printed by the worker's console backend."""
import time
from datetime import timedelta

from django.utils import timezone

from apps.alerts.models import Alert, Delivery
from apps.alerts.tasks import evaluate_alert_rules
from apps.alerts.webhooks import SIGNATURE_HEADER, verify_signature

from .alerts_support import feed, make_rule, released, webhook_receiver  # noqa: F401 (fixture)


def wait_until(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.3)
    return predicate()


def test_worker_evaluates_rules_and_delivers_signed_webhook(celery_worker, tenant, webhook_receiver, exact_counts,
                                                           settings):
    rule = make_rule(tenant.site, name="Worker rule", threshold_pct=40, window_minutes=5, min_detections=10,
                     emails=["officer@acme.example"], webhook_url=webhook_receiver.url)
    # A minute the worker's evaluation (at the real now) sees as released, with enough
    # people (50, 60 detections each) for the worker's alert rule at the default ε: 4 σ of
    # noise in the detections, and 70 % negative lowered by 2 σ still above 40 %.
    ts = timezone.now() - settings.AFFECTWATCH["RELEASE_DELAY"] - timedelta(minutes=2)
    released(feed(tenant.device, negative=2100, neutral=600, positive=300, ts=ts, people=50))

    evaluate_alert_rules.delay()

    assert webhook_receiver.wait_for(1, timeout=60), celery_worker.log_text()[-3000:]
    req = webhook_receiver.requests[0]
    assert verify_signature(rule.webhook_secret, req["headers"][SIGNATURE_HEADER], req["body"])
    payload = webhook_receiver.json(0)
    alert = Alert.objects.get(rule=rule)
    assert payload["event"] == "alert.opened" and payload["alert"]["id"] == alert.pk
    assert payload["alert"]["value_pct"] == 70.0 and alert.state == "open"

    def all_sent():
        return set(alert.deliveries.values_list("channel", "status")) == {("email", "sent"), ("webhook", "sent")}

    assert wait_until(all_sent), list(alert.deliveries.values()) + [celery_worker.log_text()[-3000:]]
    assert "Subject: [Affectwatch] Plant: negative share 70% (Worker rule)" in celery_worker.log_text()

    evaluate_alert_rules.delay()  # a second tick opens nothing new while the alert is open
    assert wait_until(lambda: celery_worker.log_text().count("alert rules evaluated") >= 2)
    assert Alert.objects.filter(rule=rule).count() == 1
    assert Delivery.objects.filter(alert__rule=rule).count() == 2
