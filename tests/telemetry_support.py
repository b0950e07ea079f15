"""Telemetry test helpers: releasing minutes as the beat task would, without waiting."""


def release_minutes(*devices, since=None, until=None):
    """What beat does every 20 s, brought forward: each device heartbeats (as boards do
    every 30 s), its release mark starts at `since` (default: 3 days ago, before any
    test's events; a mark already set stays), and every minute before `until` (default:
    the end of the current minute) is released. Returns the cells released."""
    from datetime import timedelta

    from django.conf import settings as dj_settings
    from django.utils import timezone

    from apps.telemetry.models import DeviceRelease
    from apps.telemetry.release import floor_minute, release_due

    now = (until or timezone.now() + timedelta(minutes=1)) + dj_settings.AFFECTWATCH["RELEASE_DELAY"]
    start = floor_minute(since or timezone.now() - timedelta(days=3))
    for device in devices:
        DeviceRelease.objects.get_or_create(device=device, defaults={"until": start})
        type(device).objects.filter(pk=device.pk).update(last_seen_at=now)
    cells = 0
    while (n := release_due(now)["cells"]):
        cells += n
    return cells
