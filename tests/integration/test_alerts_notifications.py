"""Alert notifications in-process: e-mail through Django's locmem backend, webhooks to a
real HTTP server on 127.0.0.1, with the signature checked as a receiver would."""
import pytest
from django.core import mail
from django.test import RequestFactory

from apps.alerts import services, webhooks
from apps.alerts.models import Alert
from apps.alerts.webhooks import SIGNATURE_HEADER, verify_signature

from .alerts_support import evaluate, feed, make_rule, webhook_receiver  # noqa: F401 (fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("exact_counts")]


@pytest.fixture
def eager():
    """Celery tasks run inline, retries included (their countdown is skipped)."""
    from affectwatch.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.fixture
def no_private(settings):
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "WEBHOOK_ALLOW_PRIVATE": False}


def open_alert(tenant, django_capture_on_commit_callbacks, **rule_fields):
    rule = make_rule(tenant.site, **rule_fields)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate(feed(tenant.device, negative=15, neutral=5))
    return rule, Alert.objects.get(rule=rule)


def test_opened_alert_emails_each_recipient(tenant, eager, settings, django_capture_on_commit_callbacks):
    assert settings.EMAIL_BACKEND == "django.core.mail.backends.locmem.EmailBackend"
    rule, alert = open_alert(tenant, django_capture_on_commit_callbacks,
                             emails=["officer@acme.example", "lead@acme.example"])
    assert sorted(m.to[0] for m in mail.outbox) == ["lead@acme.example", "officer@acme.example"]
    message = mail.outbox[0]
    assert all(len(m.to) == 1 for m in mail.outbox)  # recipients do not see each other
    assert "Plant" in message.subject and "75%" in message.subject
    assert "75.0%" in message.body and "threshold 50%" in message.body and f"#alert-{alert.pk}" in message.body
    assert set(alert.deliveries.values_list("channel", "status")) == {("email", "sent")}


def test_webhook_is_signed_and_verifiable(tenant, eager, webhook_receiver, django_capture_on_commit_callbacks):
    rule, alert = open_alert(tenant, django_capture_on_commit_callbacks, webhook_url=webhook_receiver.url)
    assert webhook_receiver.wait_for(1, timeout=5)
    req = webhook_receiver.requests[0]
    assert req["path"] == "/hooks/affectwatch"
    assert verify_signature(rule.webhook_secret, req["headers"][SIGNATURE_HEADER], req["body"])
    assert not verify_signature(rule.webhook_secret, req["headers"][SIGNATURE_HEADER], req["body"] + b" ")
    assert not verify_signature("whsec_wrong", req["headers"][SIGNATURE_HEADER], req["body"])
    body = webhook_receiver.json(0)
    assert body["event"] == "alert.opened" and req["headers"]["X-Affectwatch-Event"] == "alert.opened"
    assert body["alert"]["id"] == alert.pk and body["alert"]["value_pct"] == 75.0
    assert body["alert"]["site"]["slug"] == "plant" and body["alert"]["detections"] == 20
    delivery = alert.deliveries.get()
    assert (delivery.channel, delivery.status, delivery.attempts) == ("webhook", "sent", 1)


def test_signature_format_and_replay_window():
    header = webhooks.sign("whsec_x", b"{}", timestamp=1_700_000_000)
    t, v1 = header.split(",")
    assert t == "t=1700000000" and v1.startswith("v1=") and len(v1) == 3 + 64
    assert verify_signature("whsec_x", header, b"{}", now=1_700_000_100)
    assert not verify_signature("whsec_x", header, b"{}", now=1_700_000_000 + 301)  # too old: a replay
    assert not verify_signature("whsec_x", "garbage", b"{}")


def test_webhook_retries_5xx_with_the_same_body(tenant, eager, webhook_receiver, django_capture_on_commit_callbacks):
    webhook_receiver.statuses = [503, 500]
    rule, alert = open_alert(tenant, django_capture_on_commit_callbacks, webhook_url=webhook_receiver.url)
    assert len(webhook_receiver.requests) == 3
    bodies = {r["body"] for r in webhook_receiver.requests}
    assert len(bodies) == 1  # receivers can de-duplicate on the body's id
    delivery = alert.deliveries.get()
    assert (delivery.status, delivery.attempts) == ("sent", 3)


def test_webhook_retries_a_timeout(tenant, eager, settings, webhook_receiver, django_capture_on_commit_callbacks):
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "WEBHOOK_TIMEOUT_S": 0.5}
    webhook_receiver.delays = [1.5]
    rule, alert = open_alert(tenant, django_capture_on_commit_callbacks, webhook_url=webhook_receiver.url)
    delivery = alert.deliveries.get()
    assert (delivery.status, delivery.attempts) == ("sent", 2)


def test_webhook_4xx_is_not_retried(tenant, eager, webhook_receiver, django_capture_on_commit_callbacks):
    webhook_receiver.statuses = [410]
    rule, alert = open_alert(tenant, django_capture_on_commit_callbacks, webhook_url=webhook_receiver.url)
    delivery = alert.deliveries.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 1, "HTTP 410")
    assert len(webhook_receiver.requests) == 1


def test_webhook_gives_up_after_the_retries(tenant, eager, settings, webhook_receiver,
                                            django_capture_on_commit_callbacks):
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "NOTIFY_MAX_RETRIES": 2}
    webhook_receiver.statuses = [502] * 10
    rule, alert = open_alert(tenant, django_capture_on_commit_callbacks, webhook_url=webhook_receiver.url)
    delivery = alert.deliveries.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 3, "HTTP 502")


def test_acknowledge_and_resolve_are_announced(tenant, eager, webhook_receiver, django_capture_on_commit_callbacks):
    rule, alert = open_alert(tenant, django_capture_on_commit_callbacks, webhook_url=webhook_receiver.url,
                             emails=["officer@acme.example"])
    request = RequestFactory().post("/")
    request.user = tenant.officer
    with django_capture_on_commit_callbacks(execute=True):
        services.acknowledge(request, alert)
    with django_capture_on_commit_callbacks(execute=True):
        services.resolve(request, alert, note="Break schedule changed")
    events = [webhook_receiver.json(i)["event"] for i in range(len(webhook_receiver.requests))]
    assert events == ["alert.opened", "alert.acknowledged", "alert.resolved"]
    last = webhook_receiver.json(2)["alert"]
    assert last["state"] == "resolved" and last["note"] == "Break schedule changed"
    assert len(mail.outbox) == 1  # e-mail only when an alert opens


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://192.168.0.9/",
    "http://[::1]/hook", "http://169.254.169.254/latest/meta-data", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/",
])
def test_private_webhook_urls_are_refused_in_production(no_private, url):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        webhooks.validate_webhook_url(url)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "javascript:alert(1)",
                                 "http://user:pw@example.com/"])
def test_only_plain_http_urls(url):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        webhooks.validate_webhook_url(url)


def test_public_webhook_urls_pass_validation(no_private):
    assert webhooks.validate_webhook_url("https://hooks.example.com/affectwatch")
    assert webhooks.validate_webhook_url("http://93.184.216.34/hook")


def test_a_name_that_resolves_to_loopback_is_refused_at_call_time(
        tenant, eager, no_private, webhook_receiver, django_capture_on_commit_callbacks):
    """The guard checks the connected socket, so a host name (or DNS rebinding) that
    lands on a private address is refused before anything is sent."""
    sneaky = webhook_receiver.url.replace("127.0.0.1", "localhost")
    rule, alert = open_alert(tenant, django_capture_on_commit_callbacks, webhook_url=sneaky)
    delivery = alert.deliveries.get()
    assert delivery.status == "failed" and "non-public address" in delivery.last_error
    assert webhook_receiver.requests == []


def mail_settings(**env):
    import json
    import os
    import subprocess
    import sys

    from tests.support import ROOT

    code = ("import django, json; django.setup(); from django.conf import settings as s; print(json.dumps({k: "
            "getattr(s, k, None) for k in ('EMAIL_BACKEND', 'EMAIL_HOST', 'EMAIL_PORT', 'EMAIL_HOST_USER', "
            "'EMAIL_HOST_PASSWORD', 'EMAIL_USE_TLS', 'EMAIL_USE_SSL')}))")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMAIL_")}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**clean, "DJANGO_SETTINGS_MODULE": "affectwatch.settings", **env})
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_email_is_configured_from_the_environment():
    assert mail_settings()["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    smtp = mail_settings(EMAIL_URL="smtp+tls://alerts%40acme.example:p%40ss@mail.acme.example")
    assert smtp == {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "mail.acme.example",
                    "EMAIL_PORT": 587, "EMAIL_HOST_USER": "alerts@acme.example", "EMAIL_HOST_PASSWORD": "p@ss",
                    "EMAIL_USE_TLS": True, "EMAIL_USE_SSL": False}
    host = mail_settings(EMAIL_HOST="relay.internal", EMAIL_PORT="2525", EMAIL_USE_SSL="1")
    assert (host["EMAIL_HOST"], host["EMAIL_PORT"], host["EMAIL_USE_SSL"]) == ("relay.internal", 2525, True)
