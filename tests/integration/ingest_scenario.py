"""One ingest-and-release scenario, run on PostgreSQL in-process and on the embedded
SQLite default in a child process (`python -m tests.integration.ingest_scenario`), so
that both storage paths of `apps.telemetry.rollups` (bounding included) and the release
are held to the same answer. Both run with DP_EPSILON = 10⁹ (noise 0) and
DP_MAX_DETECTIONS = 2, set by the caller."""
import json
import uuid
from datetime import datetime, timedelta, timezone


def run(base: datetime) -> dict:
    from django.conf import settings

    from apps.accounts.models import Organisation
    from apps.sites.enrollment import create_device_with_token
    from apps.sites.models import Camera, Device, Site, Zone
    from apps.telemetry.ingest import ingest
    from apps.telemetry.models import (DeviceRelease, MinuteRollup, RawMinute, RollupTrack, SiteMinuteRollup,
                                       ZoneMinuteRollup)
    from apps.telemetry.release import release_due
    from apps.telemetry.trends import trend, trend_json

    org = Organisation.objects.create(name="Scenario", slug=f"scenario-{uuid.uuid4().hex[:6]}")
    site = Site.objects.create(organisation=org, name="Plant", slug="plant")
    zone = Zone.objects.create(site=site, name="Line 1")
    zoned, _ = create_device_with_token(site, "zoned", zone=zone)
    loose, _ = create_device_with_token(site, "loose", zone=None)
    for device in (zoned, loose):
        Camera.objects.create(device=device, name="cam0")
        Camera.objects.create(device=device, name="cam1")
    labels = ("negative", "neutral", "positive")
    answers = []
    for b in range(6):
        device = (zoned, loose)[b % 2]
        events = [{"ts": (base + timedelta(minutes=(b * 7 + i) % 3, seconds=i)).isoformat(), "camera": f"cam{i % 2}",
                   "track": str(i % (2 + b)), "label": labels[(b + i) % 3], "confidence": 0.7} for i in range(12)]
        events.append({"ts": base.isoformat(), "camera": "cam9", "track": "1", "label": "neutral", "confidence": 0.5})
        if b == 0:  # a minute with one person in it, hidden below K = 2
            events.append({"ts": (base + timedelta(minutes=10)).isoformat(), "camera": "cam0", "track": "solo",
                           "label": "negative", "confidence": 0.9})
        answer, minutes = ingest(device, {"batch_id": str(uuid.uuid4()), "events": events})
        answers.append({**answer, "batch_id": None, "minutes": [m.isoformat() for m in minutes]})

    def rows(qs, owner):
        return sorted([getattr(r, owner).name, r.minute.isoformat(), r.negative, r.neutral, r.positive, r.tracks]
                      for r in qs.select_related(owner))

    raw = rows(RawMinute.objects.filter(device__site=site), "device")
    tally = sorted([t.device.name, t.minute.isoformat(), t.camera.name, t.track, t.detections]
                   for t in RollupTrack.objects.filter(device__site=site).select_related("device", "camera"))
    since, until = base - timedelta(hours=1), base + timedelta(hours=1)
    for device in (zoned, loose):
        DeviceRelease.objects.create(device=device, until=since)
    Device.objects.filter(site=site).update(last_seen_at=base + timedelta(minutes=30))
    release_due(base + timedelta(minutes=30) + settings.AFFECTWATCH["RELEASE_DELAY"])
    return {
        "answers": answers,
        "raw": raw,
        "tally": tally,
        "device": rows(MinuteRollup.objects.filter(site=site), "device"),
        "zone": rows(ZoneMinuteRollup.objects.filter(site=site), "zone"),
        "site": rows(SiteMinuteRollup.objects.filter(site=site), "site"),
        "trend": trend(site, since, until),
        "trend_json": json.loads(trend_json(site, since, until)),
        # The downsampled levels (hour and day rows written by the release).
        **{f"trend_{bucket}": trend(site, since, until, bucket) for bucket in ("hour", "day")},
        **{f"zone_{bucket}": trend(site, since, until, bucket, zone=zone) for bucket in ("hour", "day")},
        "device_day_json": json.loads(trend_json(site, since, until, "day", device=loose)),
    }


if __name__ == "__main__":
    import os
    import sys

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "affectwatch.settings")
    django.setup()
    print(json.dumps(run(datetime.fromisoformat(sys.argv[1]).astimezone(timezone.utc))))
