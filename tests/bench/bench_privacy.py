"""What differential privacy costs a safety officer (`make bench ARGS=privacy`).

Two weeks of synthetic raw device-minute cells — the demo's Assembly Hall (2 boards,
6 people per board on shift) and a large site (40 boards, 10 people each) — with
shifts, breaks, a quiet weekend and a stressful afternoon on one line. Each person on
shift adds one detection a second (the agent's emission limit, so every track-minute
is at the bound C). The cells are released by the production mechanism
(`apps.telemetry.privacy.Mechanism`, OpenDP) and read with the production display rule
(`apps.telemetry.trends.hidden`), then compared with the raw numbers:

- how far the shown negative shares move (site per hour and per minute, zone per day,
  the weekday × hour heatmap), in percentage points;
- how many buckets the display rule hides;
- alert rules (negative share above 20 % over 15 or 60 minutes, at least 100
  detections) evaluated every minute on raw and on released numbers: episodes that fire
  on raw data and are missed, and false alarms, matched within ±30 minutes.

Results: bench-results/privacy.json and privacy.md.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench-results"
DAYS = 14
MINUTES = DAYS * 24 * 60
RULES = [{"threshold_pct": 20.0, "window": w, "min_detections": 100} for w in (15, 60)]


@dataclass
class Site:
    name: str
    boards: int
    people: int  # per board, on shift
    zones: int


def on_shift(minute_of_week: np.ndarray) -> np.ndarray:
    """Fraction of a board's people present: two shifts 06-22 on weekdays with breaks at
    10:00-10:15 and 12:30-13:00; a skeleton crew (a fifth) on Saturday mornings."""
    day, minute = minute_of_week // 1440, minute_of_week % 1440
    hour = minute / 60
    weekday = (day < 5) & (hour >= 6) & (hour < 22)
    breaks = ((hour >= 10) & (hour < 10.25)) | ((hour >= 12.5) & (hour < 13))
    saturday = (day == 5) & (hour >= 6) & (hour < 12)
    return np.where(weekday & ~breaks, 1.0, np.where(weekday & breaks, 0.3, np.where(saturday, 0.2, 0.0)))


def raw_cells(site: Site, rng) -> tuple[np.ndarray, np.ndarray]:
    """(boards, minutes, 4) int cells and each board's zone. Half the zones (the demo's
    Line 1) have stressful afternoons (14:00-17:00, Tuesday to Thursday): 45 % negative
    against 12 %, so the site's share rises to about 28 % against a rule at 20 %."""
    t = np.arange(MINUTES)
    presence = on_shift(t % (7 * 1440))
    hour = (t % 1440) / 60
    day = (t // 1440) % 7
    stress = (hour >= 14) & (hour < 17) & (day >= 1) & (day <= 3)
    zone_of = np.arange(site.boards) % site.zones
    cells = np.zeros((site.boards, MINUTES, 4), dtype=np.int64)
    for b in range(site.boards):
        people = rng.binomial(site.people, presence)
        p_neg = np.where(stress & (zone_of[b] < site.zones // 2), 0.45, 0.12) + rng.normal(0, 0.02, MINUTES).clip(-0.1, 0.1)
        p_pos = np.full(MINUTES, 0.18)
        p = np.stack([p_neg, 1 - p_neg - p_pos, p_pos], axis=1)
        n = people * 60
        neg = rng.binomial(n, p[:, 0])
        pos = rng.binomial(n - neg, p[:, 2] / (1 - p[:, 0]))
        cells[b, :, 0], cells[b, :, 1], cells[b, :, 2], cells[b, :, 3] = neg, n - neg - pos, pos, people
    return cells, zone_of


def shares(counts: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Negative share (%) of clamped (…, 3+) counts; NaN where hidden or empty."""
    c = np.clip(counts[..., :3], 0, None).astype(float)
    total = c.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = 100 * c[..., 0] / total
    s[hidden | (total == 0)] = np.nan
    return s


def buckets(cells: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum (…, minutes, 4) cells into buckets of `size` minutes: (sums, busiest minute's tracks)."""
    shape = cells.shape[:-2] + (cells.shape[-2] // size, size, 4)
    b = cells.reshape(shape)
    return b.sum(-2), b[..., 3].max(-1)


def compare(raw, released, size, k, floor, cells_per_minute):
    """Share differences (pp) of buckets of `size` minutes shown on both sides."""
    from apps.telemetry.trends import hidden as rule

    r_sum, r_tk = buckets(raw, size)
    n_sum, n_tk = buckets(released, size)
    vec = np.vectorize(lambda n, u, p, tk, c: rule(n, u, p, tk, c, k, floor))
    n_hidden = vec(n_sum[..., 0], n_sum[..., 1], n_sum[..., 2], n_tk, size * cells_per_minute)
    r_hidden = (r_tk < k) | (r_sum[..., :3].sum(-1) == 0)
    diff = np.abs(shares(r_sum, r_hidden) - shares(n_sum, n_hidden))
    both = ~np.isnan(diff)
    d = diff[both]
    return {
        "buckets": int(r_sum[..., 0].size),
        "shown_raw": int((~r_hidden).sum()),
        "shown_released": int((~n_hidden).sum()),
        "shown_both": int(both.sum()),
        "median_abs_pp": round(float(np.median(d)), 2) if d.size else None,
        "p95_abs_pp": round(float(np.percentile(d, 95)), 2) if d.size else None,
    }


#: A rule that fired within this many minutes is still the same alert: the product keeps
#: one alert open per rule until a person resolves it, and a person reading it would
#: not resolve it sooner.
MERGE_MINUTES = 60
#: A released alert this close to a raw one (either side) is the same alert, late or early.
MATCH_MINUTES = 30


def episodes(fires: np.ndarray) -> list[int]:
    """Minutes where an alert would open: the rule fires after MERGE_MINUTES quiet ones."""
    out, last = [], -10**9
    for m in np.flatnonzero(fires):
        if m - last > MERGE_MINUTES:
            out.append(int(m))
        last = m
    return out


def alerts(raw_site, released_site, cells_per_minute, k, rule_spec):
    """Each minute, the production `evaluation.condition_holds` on the released window and
    the plain condition (enough detections, K people, share above the threshold) on the
    raw one."""
    from types import SimpleNamespace

    from apps.alerts.evaluation import Window, condition_holds

    w = rule_spec["window"]
    rule = SimpleNamespace(min_detections=rule_spec["min_detections"], threshold_pct=rule_spec["threshold_pct"])
    kernel = np.ones(w)

    def windows(c):
        sums = np.clip(np.stack([np.convolve(c[:, i], kernel)[:MINUTES] for i in range(3)], axis=1), 0, None)
        tk = np.array([c[max(0, m - w + 1): m + 1, 3].max() for m in range(MINUTES)])
        cells = np.minimum(np.arange(1, MINUTES + 1), w) * cells_per_minute
        return [Window(None, None, int(s[0]), int(s.sum()), int(t), int(ce)) for s, t, ce in zip(sums, tk, cells)]

    raw = np.array([win.detections >= rule.min_detections and win.tracks >= k and win.share_pct > rule.threshold_pct
                    for win in windows(raw_site)])
    released = np.array([condition_holds(rule, win, k) for win in windows(released_site)])
    raw_ep, rel_ep = episodes(raw), episodes(released)
    near = lambda m, others: any(abs(m - o) <= MATCH_MINUTES for o in others)  # noqa: E731
    delays = [min(rel_ep, key=lambda o: abs(o - m)) - m for m in raw_ep if near(m, rel_ep)]
    return {"rule": rule_spec, "raw_episodes": len(raw_ep), "released_episodes": len(rel_ep),
            "missed": sum(not near(m, rel_ep) for m in raw_ep),
            "false_alarms": sum(not near(m, raw_ep) for m in rel_ep),
            "median_delay_min": statistics.median(delays) if delays else None}


def measure(site: Site, mech, k, floor, seed=0):
    rng = np.random.default_rng(seed)
    raw, zone_of = raw_cells(site, rng)
    t = time.perf_counter()
    released = mech.release(raw.reshape(-1, 4)).reshape(raw.shape)
    noise_s = time.perf_counter() - t
    site_raw, site_rel = raw.sum(0), released.sum(0)
    zone_raw = np.stack([raw[zone_of == z].sum(0) for z in range(site.zones)])
    zone_rel = np.stack([released[zone_of == z].sum(0) for z in range(site.zones)])
    per_zone = np.bincount(zone_of, minlength=site.zones)
    # Weekday × hour: the two weeks folded onto one (2 samples of each hour).
    week = lambda c: c.reshape(2, 7 * 24, 60, 4).transpose(1, 0, 2, 3).reshape(7 * 24, 120, 4)  # noqa: E731
    heat = compare(week(site_raw), week(site_rel), 120, k, floor, site.boards)
    return {
        "site": site.__dict__, "cells": int(raw.shape[0] * raw.shape[1]), "noise_seconds": round(noise_s, 1),
        "site_minute": compare(site_raw, site_rel, 1, k, floor, site.boards),
        "site_hour": compare(site_raw, site_rel, 60, k, floor, site.boards),
        "zone_day": {f"zone {z}": compare(zone_raw[z], zone_rel[z], 1440, k, floor, int(per_zone[z]))
                     for z in range(site.zones)},
        "heatmap": heat,
        "alerts": [alerts(site_raw, site_rel, site.boards, k, r) for r in RULES],
    }


def main(argv):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "affectwatch.settings")
    import django

    django.setup()
    from django.conf import settings

    from apps.telemetry.privacy import mechanism
    from workers.report import machine
    from apps.telemetry.trends import noise_floor

    mech, k, floor = mechanism(), settings.AFFECTWATCH["K_ANONYMITY"], noise_floor()
    sites = [Site("demo Assembly Hall", boards=2, people=6, zones=2), Site("large site", boards=40, people=10, zones=8)]
    results = {"machine": machine(), "epsilon_per_track_minute": mech.spent_epsilon(),
               "max_detections": mech.max_detections, "counts_scale": mech.counts_scale,
               "tracks_scale": mech.tracks_scale, "k_anonymity": k, "noise_floor_one_cell": round(floor, 1),
               "alert_confidence_z": settings.AFFECTWATCH["ALERT_CONFIDENCE_Z"],
               "alert_min_snr": settings.AFFECTWATCH["ALERT_MIN_SNR"],
               "sites": [measure(s, mech, k, floor) for s in sites]}
    OUT.mkdir(exist_ok=True)
    (OUT / "privacy.json").write_text(json.dumps(results, indent=2, default=int))
    (OUT / "privacy.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(r) -> str:
    lines = [
        "# What differential privacy costs (bench_privacy)", "",
        f"Machine: {r['machine']}. ε = {r['epsilon_per_track_minute']:g} per track-minute "
        f"(label counts: noise scale {r['counts_scale']:g} detections; distinct tracks: {r['tracks_scale']:g}); "
        f"C = {r['max_detections']} detections per track-minute; K = {r['k_anonymity']}; "
        f"a one-cell bucket needs {r['noise_floor_one_cell']:g} detections to be shown.", "",
        "Negative share, released vs raw, where both show the bucket (percentage points):", "",
        "| site | view | buckets | shown raw | shown released | median |Δ| | p95 |Δ| |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in r["sites"]:
        views = [("site, per minute", s["site_minute"]), ("site, per hour", s["site_hour"]),
                 ("heatmap weekday × hour", s["heatmap"])]
        views += [(f"{z}, per day", v) for z, v in s["zone_day"].items()]
        for name, v in views:
            lines.append(f"| {s['site']['name']} | {name} | {v['buckets']} | {v['shown_raw']} | {v['shown_released']} "
                         f"| {v['median_abs_pp']} | {v['p95_abs_pp']} |")
    lines += ["", "Alert rules (negative share > 20 % over the window, ≥ 100 detections; on released numbers "
              f"≥ {r['alert_min_snr']:g} σ of noise in the detections and the share's negative count lowered by "
              f"{r['alert_confidence_z']:g} σ of its noise), evaluated every "
              "minute; an alert opens when a rule "
              f"fires after {MERGE_MINUTES} quiet minutes; raw and released alerts matched within ±{MATCH_MINUTES} "
              "minutes:", "",
              "| site | window (min) | alerts (raw) | alerts (released) | missed | false alarms | median delay (min) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for s in r["sites"]:
        for a in s["alerts"]:
            lines.append(f"| {s['site']['name']} | {a['rule']['window']} | {a['raw_episodes']} | {a['released_episodes']} "
                         f"| {a['missed']} | {a['false_alarms']} | {a['median_delay_min']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
