"""The demo's history keeps its promise to a first-time safety officer: every stressful
afternoon opens the demo's alert rule, whatever noise the release draws."""
from django.conf import settings

from apps.accounts.management.commands.seed_demo import DEMO_DEVICES, DEMO_RULE
from apps.telemetry.demo_history import CALM, DETECTIONS_PER_PERSON, STRESSED
from apps.telemetry.privacy import mechanism


def test_a_stressful_afternoon_clears_the_rule_by_more_than_the_noise():
    boards = sum(site == "assembly-hall" for site, _, _ in DEMO_DEVICES)  # one calm, one stressed
    assert boards == 2
    minutes, crew = DEMO_RULE["window_minutes"], 6  # minute_cells' default crew
    detections = boards * minutes * crew * min(DETECTIONS_PER_PERSON, settings.AFFECTWATCH["DP_MAX_DETECTIONS"])
    share = 100 * (CALM[0] + STRESSED[0]) / 2
    sigma = 100 * mechanism().std_of_sum(boards * minutes) / detections  # of the share, in points
    lowered = share - settings.AFFECTWATCH["ALERT_CONFIDENCE_Z"] * sigma  # what condition_holds compares
    assert detections >= DEMO_RULE["min_detections"]
    # A window misses only if its noise is below −(lowered − threshold): under 0.6 % at 2.5 σ.
    assert (lowered - DEMO_RULE["threshold_pct"]) / sigma > 2.5, (share, sigma)
    # and a calm afternoon never alarms (the same margin the other way)
    assert (DEMO_RULE["threshold_pct"] - (100 * CALM[0] - settings.AFFECTWATCH["ALERT_CONFIDENCE_Z"] * sigma)) / sigma > 2.5
