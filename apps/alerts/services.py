"""Changing rules and alerts, for the API and the pages alike: each change is audited,
and an alert's change of state is announced to its webhook."""
from django.db import transaction
from django.utils import timezone

from apps.accounts.access import audit

from .models import ACTIVE_STATES, Alert, AlertRule, AlertState
from .webhooks import new_webhook_secret

# What the audit log records of a rule (never its secret).
AUDITED_FIELDS = ("name", "threshold_pct", "window_minutes", "min_detections", "enabled", "emails", "webhook_url",
                  "cooldown_minutes")


class StateError(ValueError):
    """The alert is not in a state that allows this (answered 409)."""


def _snapshot(rule):
    return {f: getattr(rule, f) for f in AUDITED_FIELDS}


def create_rule(request, site, **fields) -> AlertRule:
    user = request.user
    rule = AlertRule.objects.create(site=site, webhook_secret=new_webhook_secret(),
                                    created_by=user if getattr(user, "pk", None) else None, **fields)
    audit(request, "alert_rule.create", target=rule, organisation=site.organisation, rule=rule.pk,
          site=site.pk, settings=_snapshot(rule))
    return rule


def update_rule(request, rule: AlertRule, **fields) -> AlertRule:
    before = _snapshot(rule)
    for name, value in fields.items():
        setattr(rule, name, value)
    rule.save()
    after = _snapshot(rule)
    changes = {k: [before[k], after[k]] for k in AUDITED_FIELDS if before[k] != after[k]}
    if changes:
        audit(request, "alert_rule.update", target=rule, organisation=rule.site.organisation, rule=rule.pk,
              site=rule.site_id, changes=changes)
    return rule


def delete_rule(request, rule: AlertRule) -> None:
    audit(request, "alert_rule.delete", target=rule, organisation=rule.site.organisation, rule=rule.pk,
          site=rule.site_id, settings=_snapshot(rule))
    rule.delete()


def rotate_secret(request, rule: AlertRule) -> str:
    rule.webhook_secret = new_webhook_secret()
    rule.save(update_fields=["webhook_secret", "updated_at"])
    audit(request, "alert_rule.rotate_secret", target=rule, organisation=rule.site.organisation, rule=rule.pk,
          site=rule.site_id)
    return rule.webhook_secret


def _announce(alert, event):
    from .tasks import notify_alert

    transaction.on_commit(lambda: notify_alert.delay(alert.pk, event))


def _transition(request, alert, allowed, refusal, state, by_field, at_field, note, action, event):
    """Moves an alert to `state` under a row lock; audited and announced once committed."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update(of=("self",)).select_related("site__organisation").get(pk=alert.pk)
        if alert.state not in allowed:
            raise StateError(refusal(alert))
        alert.state = state
        setattr(alert, by_field, request.user)
        setattr(alert, at_field, timezone.now())
        if note:
            alert.note = note
        alert.save()
        audit(request, action, target=alert, organisation=alert.site.organisation, alert=alert.pk)
        _announce(alert, event)
    return alert


def acknowledge(request, alert: Alert, note: str = "") -> Alert:
    return _transition(
        request, alert, (AlertState.OPEN,),
        lambda a: f"only an open alert can be acknowledged; this one is {a.state}",
        AlertState.ACKNOWLEDGED, "acknowledged_by", "acknowledged_at", note,
        "alert.acknowledge", "alert.acknowledged",
    )


def resolve(request, alert: Alert, note: str = "") -> Alert:
    return _transition(
        request, alert, ACTIVE_STATES, lambda a: "this alert is already resolved",
        AlertState.RESOLVED, "resolved_by", "resolved_at", note, "alert.resolve", "alert.resolved",
    )
