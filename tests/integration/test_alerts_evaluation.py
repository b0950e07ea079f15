"""Alert rules evaluated on the site rollups that the real ingest maintains."""
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.alerts import evaluation
from apps.alerts.models import Alert, AlertState
from apps.telemetry.models import EmotionEvent

from .alerts_support import evaluate, feed, make_rule, released

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("exact_counts")]


def test_rule_opens_an_alert_when_the_negative_share_is_above_its_threshold(tenant, django_capture_on_commit_callbacks):
    rule = make_rule(tenant.site, threshold_pct=50, window_minutes=10, min_detections=10)
    now = feed(tenant.device, negative=8, neutral=3, positive=1)
    with django_capture_on_commit_callbacks() as callbacks:
        stats = evaluate(now)
    assert stats == {"rules": 1, "opened": 1, "cleared": 0}
    alert = Alert.objects.get()
    assert (alert.rule, alert.site, alert.state) == (rule, tenant.site, AlertState.OPEN)
    assert (alert.negative, alert.detections) == (8, 12)
    assert alert.value_pct == pytest.approx(66.67, abs=0.01)
    assert alert.window_end - alert.window_start == timedelta(minutes=10)
    assert alert.window_start <= now < alert.window_end
    assert len(callbacks) == 1  # the notification task is queued once the alert is committed


@pytest.mark.parametrize("labels, why", [
    ({"negative": 6}, "fewer detections than min_detections"),
    ({"negative": 5, "neutral": 5}, "exactly at the threshold is not above it"),
    ({"negative": 2, "neutral": 8}, "below the threshold"),
])
def test_no_alert_when_the_condition_does_not_hold(tenant, labels, why):
    make_rule(tenant.site, threshold_pct=50, min_detections=10)
    now = feed(tenant.device, **labels)
    evaluate(now)
    assert not Alert.objects.exists(), why


def test_small_groups_never_open_an_alert(tenant):
    """k-anonymity: 12 negative labels from two people say how those two felt."""
    make_rule(tenant.site, threshold_pct=50, min_detections=10)
    now = feed(tenant.device, negative=12, people=2)
    evaluate(now)
    assert not Alert.objects.exists()
    later = now + timedelta(minutes=1)
    feed(tenant.device, negative=3, ts=later, people=3)  # three people in the next minute
    evaluate(later)
    assert Alert.objects.count() == 1


def test_only_the_rules_window_counts(tenant):
    now = timezone.now()
    feed(tenant.device, negative=10, ts=now - timedelta(minutes=15))
    feed(tenant.device, neutral=10, ts=now)
    short = make_rule(tenant.site, name="10 min", threshold_pct=40, window_minutes=10)
    long = make_rule(tenant.site, name="20 min", threshold_pct=40, window_minutes=20)
    evaluate(now)
    assert not short.alerts.exists()
    alert = long.alerts.get()
    assert (alert.negative, alert.detections) == (10, 20)


def test_other_sites_labels_do_not_count(tenant, make_site, make_device):
    other_site = make_site(tenant.org, "depot")
    other_device, _ = make_device(other_site, "depot-board")
    make_rule(tenant.site, threshold_pct=50)
    now = feed(other_device, negative=20)
    feed(tenant.device, neutral=10, ts=now)
    evaluate(now)
    assert not Alert.objects.exists()


def test_disabled_rules_are_not_evaluated(tenant):
    make_rule(tenant.site, enabled=False)
    now = feed(tenant.device, negative=20)
    assert evaluate(now)["rules"] == 0
    assert not Alert.objects.exists()


def test_reads_rollups_not_raw_events(tenant, django_assert_max_num_queries, make_site):
    """Raw events may be purged by retention; the rollups alone decide. And many rules
    cost a query per distinct window length, not per rule."""
    make_rule(tenant.site)
    now = feed(tenant.device, negative=20)
    EmotionEvent.objects.all().delete()
    for i in range(6):
        make_rule(make_site(tenant.org, f"quiet-{i}"), window_minutes=10 if i % 2 else 30)
    # rules, active alerts, cooldowns, one per window length (2); savepoint, insert, release
    at = released(now)
    with django_assert_max_num_queries(8):
        evaluation.evaluate_all(at)
    assert Alert.objects.get().detections == 20


def test_one_active_alert_per_rule_and_no_auto_resolve(tenant):
    """While an alert is open or acknowledged the rule opens no other; when the condition
    clears the alert stays for a person to resolve, marked with when it cleared."""
    rule = make_rule(tenant.site, window_minutes=10)
    t0 = timezone.now() - timedelta(minutes=30)
    feed(tenant.device, negative=20, ts=t0)
    evaluate(t0)
    evaluate(t0 + timedelta(minutes=1))
    alert = rule.alerts.get()

    evaluate(t0 + timedelta(minutes=15))  # the window has moved past the surge
    alert.refresh_from_db()
    assert alert.state == AlertState.OPEN and alert.cleared_at == released(t0 + timedelta(minutes=15))

    Alert.objects.filter(pk=alert.pk).update(state=AlertState.ACKNOWLEDGED)
    now = feed(tenant.device, negative=20)  # the surge comes back
    assert evaluate(now)["opened"] == 0
    alert.refresh_from_db()
    assert alert.cleared_at is None and alert.state == AlertState.ACKNOWLEDGED
    assert rule.alerts.count() == 1


def test_cooldown_after_resolving(tenant):
    rule = make_rule(tenant.site, cooldown_minutes=30)
    now = released(feed(tenant.device, negative=20))  # the evaluations' time
    evaluation.evaluate_all(now)
    first = rule.alerts.get()
    Alert.objects.filter(pk=first.pk).update(state=AlertState.RESOLVED, resolved_at=now - timedelta(minutes=29))
    evaluation.evaluate_all(now)
    assert rule.alerts.count() == 1  # still cooling down
    Alert.objects.filter(pk=first.pk).update(resolved_at=now - timedelta(minutes=31))
    evaluation.evaluate_all(now)
    assert rule.alerts.count() == 2
    assert rule.alerts.filter(state=AlertState.OPEN).count() == 1


def test_a_racing_evaluation_opens_no_second_alert(tenant):
    rule = make_rule(tenant.site)
    now = released(feed(tenant.device, negative=20))
    window = evaluation.measure({tenant.site.id}, rule.window_minutes, now)[tenant.site.id]
    assert evaluation.open_alert(rule, window, now) is not None
    assert evaluation.open_alert(rule, window, now) is None  # the partial unique constraint held
    assert rule.alerts.count() == 1


def test_deleting_a_rule_keeps_its_alerts(tenant):
    rule = make_rule(tenant.site, name="Night shift")
    evaluate(feed(tenant.device, negative=20))
    rule.delete()
    alert = Alert.objects.get()
    assert alert.rule is None and alert.rule_name == "Night shift" and alert.threshold_pct == 50
