"""/metrics (apps/monitoring): operator-only, and it reports what the processes did and
the platform's state — counters written by a real uvicorn process and summed here."""
import hashlib
import json
import re
import uuid

import pytest
import requests
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.accounts.models import Role
from apps.sites.models import Device
from apps.training.models import FineTuneJob
from tests.support import ROOT, page_as

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(client) -> dict:
    """{(sample name, frozenset of labels): value} of one scrape."""
    res = client.get("/metrics")
    assert res.status_code == 200, res.content[:300]
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(res.content.decode()) for s in family.samples}


@pytest.fixture
def operator(django_user_model):
    user = django_user_model.objects.create_superuser("operator", password="a-long-test-password")
    return page_as(user)


def test_only_the_operator_reads_metrics(tenant, make_user, operator, settings):
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer guess").status_code == 401
    admin = make_user(tenant.org, Role.ADMIN, all_sites=True)  # an organisation's admin is not the operator
    assert page_as(admin).get("/metrics").status_code == 403
    assert page_as(tenant.officer).get("/metrics").status_code == 403
    assert operator.get("/metrics").status_code == 200
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "METRICS_TOKEN_SHA256": hashlib.sha256(b"scrape-me").hexdigest()}
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-you").status_code == 401
    assert Client().post("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 405


def test_every_rejection_code_is_a_series_from_the_start():
    """A reason's series exists at 0 before its first rejection (rate() sees the first one)."""
    from apps.telemetry import metrics

    codes = set(re.findall(r'Rejection\("(\w+)"', (ROOT / "apps" / "telemetry" / "ingest.py").read_text()))
    assert codes and codes == set(metrics.LABEL_VALUES[metrics.EVENTS_REJECTED])


def test_counters_from_a_web_process_and_the_state_gauges(platform_server, tenant, make_device, operator):
    before = scrape(operator)
    now = timezone.now().isoformat()
    events = [{"ts": now, "camera": "cam0", "track": str(i), "label": "neutral", "confidence": 0.5} for i in range(3)]
    events.append({"ts": now, "camera": "dock", "track": "1", "label": "neutral", "confidence": 0.5})
    res = requests.post(f"{platform_server.url}/api/v1/ingest/", json={"batch_id": str(uuid.uuid4()), "events": events},
                        headers={"Authorization": f"Device {tenant.token}"}, timeout=10)
    assert res.status_code == 200 and res.json()["accepted"] == 3
    other, _ = make_device(tenant.site, "board-2")
    Device.objects.filter(pk=tenant.device.pk).update(online=True, health={"queue_depth": 12, "dropped": 3})
    Device.objects.filter(pk=other.pk).update(online=False, health={"queue_depth": 5, "dropped": "junk"})
    after = scrape(operator)

    def delta(name, **labels):
        key = (name, frozenset(labels.items()))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("affectwatch_ingest_events_total") == 3  # counted by the uvicorn process, summed here
    assert delta("affectwatch_ingest_rejected_events_total", reason="unknown_camera") == 1
    assert delta("affectwatch_ingest_batches_total", outcome="stored") == 1
    assert delta("affectwatch_ingest_batch_seconds_count") == 1
    gauge = lambda name, **labels: after[(name, frozenset(labels.items()))]  # noqa: E731
    assert gauge("affectwatch_boards", state="online") == 1 and gauge("affectwatch_boards", state="offline") == 1
    assert gauge("affectwatch_boards_outbox_events") == 17 and gauge("affectwatch_boards_outbox_max_events") == 12
    assert gauge("affectwatch_boards_outbox_dropped_events") == 3  # a junk report counts as nothing
    assert {s for s in FineTuneJob.Status.values} == {dict(k[1])["state"] for k in after
                                                      if k[0] == "affectwatch_training_jobs"}
    assert gauge("affectwatch_celery_broker_up") == 1 and ("affectwatch_celery_queue_length",
                                                           frozenset({("queue", "training")})) in after


def test_the_grafana_dashboard_reads_only_metrics_the_endpoint_exposes(operator):
    dashboard = json.loads((ROOT / "platform" / "grafana" / "affectwatch.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 8
    used = {re.sub(r"_(total|bucket|count|sum)$", "", name) for e in exprs for name in re.findall(r"affectwatch_\w+", e)}
    families = {f.name for f in text_string_to_metric_families(operator.get("/metrics").content.decode())}
    assert used <= families, used - families
    assert {"affectwatch_ingest_events", "affectwatch_live_push_lag_seconds", "affectwatch_boards",
            "affectwatch_celery_queue_length", "affectwatch_training_jobs"} <= used
