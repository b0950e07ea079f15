"""Two weeks of plausible history for the demo's simulated boards, so a first look at
Affectwatch shows trends, a zone breakdown, a weekday × hour heatmap and alerts.

The history goes through the storage a live board's batches reach: bounded raw minute
cells (`rollups.add_raw_cells`, at most DP_MAX_DETECTIONS per track and minute), released
— noised and summed into zone and site rollups — by `release.release_due`, the beat
task's own function; then the alert rules are evaluated over it as beat would have. No
raw events are written: they are purged after EVENT_RETENTION_DAYS anyway and no page
reads them. Everything is synthetic; the module only runs for boards marked `simulated`.

The pattern, in the site's local time: two shifts on weekdays (06–14, 14–22) with
breaks at 10:00, 12:00 and 18:00, a short Saturday morning shift, an empty Sunday; breaks
lean positive; on the Assembly Hall's Line 2, weekday afternoons 14–18 lean negative
(the "stressful afternoon" a safety officer should spot).
"""
from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import DeviceRelease
from .release import floor_minute, release_due
from .rollups import add_raw_cells

MINUTE = timedelta(minutes=1)
#: (negative, neutral, positive) label shares. STRESSED is strong enough that the demo's
#: rule opens on every stressful afternoon whatever the noise: the Assembly Hall's share
#: (Line 1 calm, Line 2 stressed) clears the rule's noise-lowered threshold by more than
#: 2.5 standard deviations of its noise (tests/unit/test_demo_history.py). At 0.55 it
#: cleared it by 0.2 σ, and a Monday afternoon could pass without an alert.
CALM, BREAK, STRESSED = (0.18, 0.62, 0.20), (0.08, 0.47, 0.45), (0.75, 0.20, 0.05)
DETECTIONS_PER_PERSON = 45  # mean detections a person adds to a minute (the agent emits at most one a second)


def _people(local, crew: int) -> float:
    """Expected people in front of a board at a local time."""
    wd, h, m = local.weekday(), local.hour, local.minute
    if wd == 6 or (wd == 5 and not 6 <= h < 12) or not 6 <= h < 22:
        return 0.3  # a cleaner, a passing supervisor
    present = crew * (0.5 if wd == 5 else 1.0)
    if (h, m // 15) == (10, 0) or h == 12 and m < 30 or h == 18 and m < 30:
        return present * 0.4  # most of the crew is on break
    return present


def _shares(local, stressful: bool) -> tuple:
    wd, h, m = local.weekday(), local.hour, local.minute
    if (h, m // 15) == (10, 0) or h == 12 and m < 30 or h == 18 and m < 30:
        return BREAK
    if stressful and wd < 5 and 14 <= h < 18:
        return STRESSED
    return CALM


def minute_cells(device, start, minutes: int, rng: np.random.Generator, stressful: bool = False,
                 crew: int = 6) -> dict:
    """{minute: (negative, neutral, positive, tracks)} for `minutes` minutes from `start`:
    people present drawn around `_people`, each adding Poisson(DETECTIONS_PER_PERSON)
    detections capped at DP_MAX_DETECTIONS, labels drawn from `_shares`."""
    tz = ZoneInfo(device.site.timezone or "UTC")
    cap = settings.AFFECTWATCH["DP_MAX_DETECTIONS"]
    cells = {}
    for i in range(minutes):
        t = start + i * MINUTE
        local = t.astimezone(tz)
        people = int(rng.poisson(_people(local, crew)))
        if people == 0:
            continue
        detections = int(np.minimum(rng.poisson(DETECTIONS_PER_PERSON, people), cap).sum())
        n, u, p = rng.multinomial(detections, _shares(local, stressful))
        cells[t] = (int(n), int(u), int(p), people)
    return cells


def backfill(devices, days: int = 14, now=None, seed: int = 0, stressful=()) -> dict:
    """Writes and releases `days` of history for those simulated `devices` that have never
    been released (so running it again adds nothing), then evaluates the alert rules over
    it. `stressful`: device names whose weekday afternoons lean negative. Returns
    {"devices": n, "cells": released cells, "alerts": alerts opened}."""
    from apps.alerts.evaluation import evaluate_all
    from apps.alerts.models import Alert, AlertState

    now = now or timezone.now()
    start = floor_minute(now - timedelta(days=days))
    fresh = [d for d in devices if d.simulated and not DeviceRelease.objects.filter(device=d).exists()]
    if not fresh:
        return {"devices": 0, "cells": 0, "alerts": 0}
    rng = np.random.default_rng(seed)
    minutes = int((floor_minute(now) - start) / MINUTE)
    with transaction.atomic():
        for device in fresh:
            add_raw_cells(device, minute_cells(device, start, minutes, rng, device.name in stressful))
            DeviceRelease.objects.create(device=device, until=start)
            type(device).objects.filter(pk=device.pk).update(enrolled_at=start, last_seen_at=now)
    cells = 0
    while (n := release_due(now)["cells"]):
        cells += n
    # The rules as beat evaluates them, every 15 minutes of the history. Until three days
    # ago an alert cleared for an hour is resolved (a safety officer did), so later
    # afternoons open new ones; the latest stays for the demo's officer to acknowledge.
    delay = settings.AFFECTWATCH["RELEASE_DELAY"]
    before = Alert.objects.count()
    sites = {d.site_id for d in fresh}
    t = start + timedelta(hours=2)
    while t < now - delay:
        evaluate_all(t + delay, site_ids=sites)
        if t < now - timedelta(days=3):
            Alert.objects.filter(site_id__in=sites, state=AlertState.OPEN, cleared_at__lt=t - timedelta(hours=1)
                                 ).update(state=AlertState.RESOLVED, resolved_at=t, note="resolved in the demo's history")
        t += timedelta(minutes=15)
    return {"devices": len(fresh), "cells": cells, "alerts": Alert.objects.count() - before}
