"""Evaluating alert rules against the released per-site minute rollups (never raw
events or raw cells), so an alert, its text and its webhook carry only post-processing
of the differentially private cells (apps/telemetry/privacy.py).

A rule's window is its `window_minutes` most recent *released* minutes: those ending at
least RELEASE_DELAY ago, so a surge is seen within RELEASE_DELAY plus a minute or two.
The condition holds when the window has at least `min_detections` detections, K people
in its busiest minute and ALERT_MIN_SNR standard deviations of noise in its detections
(`trends.hidden`, stricter than the dashboards' floor), and its negative share is
strictly above `threshold_pct` even after the negative count is lowered by
ALERT_CONFIDENCE_Z standard deviations of its noise — a rule is checked every minute,
and an empty night or a window of mostly empty minutes (an evening as the shift leaves)
must not alarm on noise (bench-results/privacy.md).
Counts are the noisy sums, clamped at zero; the alert records the unlowered share.

Alerts are not resolved automatically: a person reviews and resolves them. While a rule
has an open or acknowledged alert it opens no other; the evaluation only records on the
alert when the condition cleared (and clears that mark if it comes back). After an
alert is resolved the rule waits `cooldown_minutes` before it may open the next one.
"""
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Sum
from django.utils import timezone

from apps.telemetry.models import SiteMinuteRollup
from apps.telemetry.privacy import mechanism
from apps.telemetry.release import floor_minute
from apps.telemetry.trends import clamp, hidden, noise_floor

from .models import ACTIVE_STATES, Alert, AlertRule, AlertState

log = logging.getLogger(__name__)
MAX_COOLDOWN_MINUTES = 7 * 24 * 60  # AlertRule.cooldown_minutes' upper bound


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime  # exclusive
    negative: int = 0
    detections: int = 0
    tracks: int = 0  # the busiest minute's distinct people (noisy)
    cells: int = 0  # device cells summed (the noise grows with their root)

    @property
    def share_pct(self) -> float | None:
        return None if self.detections == 0 else 100.0 * self.negative / self.detections

    def share_lower_pct(self, z: float) -> float | None:
        """The negative share with its negative count lowered by z standard deviations of
        that count's noise (σ of a sum of `cells` released cells, `privacy.py`)."""
        if self.detections == 0:
            return None
        return 100.0 * (self.negative - z * mechanism().std_of_sum(self.cells)) / self.detections


def window_bounds(now: datetime, minutes: int) -> tuple[datetime, datetime]:
    """[start, end) of the `minutes` most recent released minutes at `now`."""
    end = floor_minute(now - settings.AFFECTWATCH["RELEASE_DELAY"])
    return end - timedelta(minutes=minutes), end


def measure(site_ids, minutes: int, now: datetime) -> dict[int, Window]:
    """The window of every site in `site_ids`, in one indexed query."""
    start, end = window_bounds(now, minutes)
    rows = (
        SiteMinuteRollup.objects.filter(site_id__in=site_ids, minute__gte=start, minute__lt=end)
        .values("site_id")
        .annotate(n=Sum("negative"), u=Sum("neutral"), p=Sum("positive"), tk=Max("tracks"), c=Sum("cells"))
        .order_by()
    )
    windows = {site_id: Window(start, end) for site_id in site_ids}
    for row in rows:
        n, u, p = (clamp(row[c]) for c in "nup")
        windows[row["site_id"]] = Window(start, end, n, n + u + p, row["tk"], row["c"])
    return windows


def condition_holds(rule: AlertRule, window: Window, k: int) -> bool:
    """The rule's condition on the window: enough detections, K people and ALERT_MIN_SNR
    standard deviations of noise in its detections (`trends.hidden`), and a negative
    share above the threshold even with its negative count lowered by ALERT_CONFIDENCE_Z
    standard deviations of noise."""
    share = window.share_lower_pct(settings.AFFECTWATCH["ALERT_CONFIDENCE_Z"])
    return (
        window.detections >= rule.min_detections
        and not hidden(window.detections, 0, 0, window.tracks, window.cells, k,
                       noise_floor(settings.AFFECTWATCH["ALERT_MIN_SNR"]))
        and share is not None
        and share > rule.threshold_pct
    )


def evaluate_all(now: datetime | None = None, site_ids=None) -> dict:
    """Evaluates every enabled rule (of `site_ids` only, when given). Returns counts, for
    the task's log line."""
    now = now or timezone.now()
    k = settings.AFFECTWATCH["K_ANONYMITY"]
    rules = AlertRule.objects.filter(enabled=True).select_related("site")
    rules = list(rules.filter(site_id__in=site_ids) if site_ids is not None else rules)
    by_window = defaultdict(list)
    for rule in rules:
        by_window[rule.window_minutes].append(rule)
    active = {a.rule_id: a for a in Alert.objects.filter(rule__enabled=True, state__in=ACTIVE_STATES)}
    cooling = _cooling_rules(rules, now)
    stats = {"rules": len(rules), "opened": 0, "cleared": 0}
    for minutes, group in by_window.items():
        windows = measure({r.site_id for r in group}, minutes, now)
        for rule in group:
            outcome = evaluate_rule(rule, windows[rule.site_id], k, now, active.get(rule.id), rule.id in cooling)
            if outcome in stats:
                stats[outcome] += 1
    return stats


def _cooling_rules(rules, now) -> set[int]:
    """Rules whose last alert was resolved less than their cooldown ago."""
    last = dict(
        Alert.objects.filter(rule__enabled=True, rule__cooldown_minutes__gt=0, state=AlertState.RESOLVED,
                             resolved_at__gte=now - timedelta(minutes=MAX_COOLDOWN_MINUTES))
        .values("rule_id")
        .annotate(last=Max("resolved_at"))
        .order_by()
        .values_list("rule_id", "last")
    )
    return {
        r.id for r in rules
        if last.get(r.id) is not None and last[r.id] > now - timedelta(minutes=r.cooldown_minutes)
    }


def evaluate_rule(rule, window: Window, k: int, now, active: Alert | None, cooling: bool) -> str:
    """One rule against its window: 'opened', 'cleared', or what else happened."""
    holds = condition_holds(rule, window, k)
    if active is not None:
        if not holds and active.cleared_at is None:
            Alert.objects.filter(pk=active.pk).update(cleared_at=now)
            return "cleared"
        if holds and active.cleared_at is not None:
            Alert.objects.filter(pk=active.pk).update(cleared_at=None)
            return "returned"
        return "unchanged"
    if not holds:
        return "quiet"
    if cooling:
        return "cooling"
    return "opened" if open_alert(rule, window, now) else "raced"


def open_alert(rule: AlertRule, window: Window, now) -> Alert | None:
    from .tasks import notify_alert

    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=rule, site=rule.site, rule_name=rule.name, threshold_pct=rule.threshold_pct, opened_at=now,
                value_pct=round(window.share_pct, 2), detections=window.detections, negative=window.negative,
                window_start=window.start, window_end=window.end,
            )
            transaction.on_commit(lambda: notify_alert.delay(alert.id, "alert.opened"))
    except IntegrityError:
        log.info("rule %s already has an active alert (a concurrent evaluation opened it)", rule.id)
        return None
    log.info("opened alert %s: %s", alert.id, alert)
    return alert
