from django.db import models
from django.utils import timezone

from apps.sites.models import Camera, Device, Site, Zone


class Label(models.IntegerChoices):
    NEGATIVE = 0, "negative"
    NEUTRAL = 1, "neutral"
    POSITIVE = 2, "positive"


LABEL_BY_NAME = {label.label: label.value for label in Label}


class IngestBatch(models.Model):
    """One accepted batch; its (device, batch_id) makes retries idempotent."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="batches")
    batch_id = models.UUIDField()
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    accepted = models.PositiveIntegerField(default=0)
    rejected = models.JSONField(default=list)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "batch_id"], name="unique_batch_per_device")]


class EmotionEvent(models.Model):
    """A raw label event. Kept for EVENT_RETENTION_DAYS; dashboards read rollups.

    The hottest table: besides the primary key it carries only the two indexes that
    reads and the retention purge use, so inserts stay cheap. Its references are not
    database foreign keys: their per-row checks cost 40 % of the ingest statement
    (bench-results/capacity.md). Ingest reads the device's cameras, site and zone under
    the device's lock, and deleting a device, camera or zone takes the same lock first
    (`rollups.lock_device`, `signals.py`), so no event can refer to a removed row; Django
    still cascades the deletes. Not indexed (deleting a whole device is rare and may scan)."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="events", db_index=False,
                               db_constraint=False)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="events", db_index=False,
                             db_constraint=False)
    zone = models.ForeignKey(Zone, null=True, on_delete=models.SET_NULL, related_name="events", db_index=False,
                             db_constraint=False)
    camera = models.ForeignKey(Camera, on_delete=models.CASCADE, related_name="events", db_index=False,
                               db_constraint=False)
    ts = models.DateTimeField()
    track = models.CharField(max_length=64)
    label = models.PositiveSmallIntegerField(choices=Label.choices)
    confidence = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["site", "ts"]), models.Index(fields=["ts"])]


class RawMinute(models.Model):
    """Bounded, noise-free counts of one device's minute, added to in the ingest
    transaction. Never published: `release` reads each row once, after the minute has
    closed, and writes the noisy rollups below. Each track adds at most DP_MAX_DETECTIONS
    detections to a minute (`RollupTrack.detections` keeps the tally)."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="raw_minutes")
    minute = models.DateTimeField()
    negative = models.PositiveIntegerField(default=0)
    neutral = models.PositiveIntegerField(default=0)
    positive = models.PositiveIntegerField(default=0)
    tracks = models.PositiveIntegerField(default=0, help_text="Distinct tracks seen in this minute.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "minute"], name="one_raw_minute_per_device")]
        indexes = [models.Index(fields=["minute"])]


class DeviceRelease(models.Model):
    """How far a device's minutes are released: every minute before `until` has its
    noisy cell in MinuteRollup (and in its zone's and site's sums)."""

    device = models.OneToOneField(Device, on_delete=models.CASCADE, primary_key=True, related_name="release")
    until = models.DateTimeField()


class Counts(models.Model):
    """Published counts: differentially private (apps/telemetry/privacy.py). The noise
    is unbiased, so a count may be negative; displays clamp their final numbers."""

    negative = models.IntegerField(default=0)
    neutral = models.IntegerField(default=0)
    positive = models.IntegerField(default=0)
    tracks = models.IntegerField(default=0, help_text="Distinct tracks seen in this minute (noisy).")
    cells = models.PositiveIntegerField(default=1, help_text="Device cells summed here: the noise grows with their root.")

    class Meta:
        abstract = True


class RollupCounts(Counts):
    """A published minute."""

    minute = models.DateTimeField()

    class Meta:
        abstract = True


class MinuteRollup(RollupCounts):
    """One device's released minute: its raw cell plus noise drawn once, stored."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="rollups")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="device_rollups")
    zone = models.ForeignKey(Zone, null=True, on_delete=models.SET_NULL, related_name="device_rollups")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "minute"], name="one_rollup_per_device_minute")]
        indexes = [models.Index(fields=["site", "minute"])]


class ZoneMinuteRollup(RollupCounts):
    """The sum of a zone's released device cells for one minute."""

    zone = models.ForeignKey(Zone, on_delete=models.CASCADE, related_name="rollups")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="zone_rollups")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["zone", "minute"], name="one_rollup_per_zone_minute")]
        indexes = [models.Index(fields=["site", "minute"])]


class SiteMinuteRollup(RollupCounts):
    """The sum of a site's released device cells for one minute: one row per site and minute, so
    a 30-day trend at minute resolution is one index range scan."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="rollups")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["site", "minute"], name="one_rollup_per_site_minute")]


class RollupTrack(models.Model):
    """The distinct (camera, track) pairs a device saw in a minute, for the distinct-track
    counts, and how many detections each added (bounded by DP_MAX_DETECTIONS). Purged
    with the raw events; the rollups keep the counts."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE)
    minute = models.DateTimeField()
    camera = models.ForeignKey(Camera, on_delete=models.CASCADE)
    track = models.CharField(max_length=64)
    detections = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "minute", "camera", "track"], name="unique_track_per_device_minute")
        ]
        indexes = [models.Index(fields=["minute"])]


class BucketRollup(Counts):
    """An hour or a day of a scope's released minutes, downsampled (`downsample.py`):
    the label counts and `cells` are the minutes' sums, `tracks` the busiest minute's
    distinct tracks — exactly what a trend computed from the minutes would show, so the
    minute rows can expire while these are kept forever. `start` is the bucket's start in
    the site's time zone (stored in UTC)."""

    start = models.DateTimeField()
    tracks = models.IntegerField(default=0, help_text="Distinct tracks of the busiest minute (noisy).")

    class Meta:
        abstract = True


def _scoped(name: str, scope: str, level: str, doc: str):
    """A concrete hour or day rollup for one scope (site, zone or device)."""
    fields = {"site": models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")}
    if scope == "zone":
        fields["zone"] = models.ForeignKey(Zone, on_delete=models.CASCADE, related_name="+")
    if scope == "device":
        fields["device"] = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    meta = type("Meta", (), {"constraints": [
        models.UniqueConstraint(fields=[scope, "start"], name=f"one_{level}_rollup_per_{scope}")]})
    return type(name, (BucketRollup,), {"__module__": __name__, "__doc__": doc, "Meta": meta, **fields})


SiteHourRollup = _scoped("SiteHourRollup", "site", "hour", "A site's released minutes summed by hour.")
ZoneHourRollup = _scoped("ZoneHourRollup", "zone", "hour", "A zone's released minutes summed by hour.")
DeviceHourRollup = _scoped("DeviceHourRollup", "device", "hour", "A device's released minutes summed by hour.")
SiteDayRollup = _scoped("SiteDayRollup", "site", "day", "A site's released hours summed by day.")
ZoneDayRollup = _scoped("ZoneDayRollup", "zone", "day", "A zone's released hours summed by day.")
DeviceDayRollup = _scoped("DeviceDayRollup", "device", "day", "A device's released hours summed by day.")

#: Every published level of every scope: scope → level → model. Minute rows keep the
#: time in `minute`, coarser ones in `start`.
ROLLUPS = {
    "site": {"minute": SiteMinuteRollup, "hour": SiteHourRollup, "day": SiteDayRollup},
    "zone": {"minute": ZoneMinuteRollup, "hour": ZoneHourRollup, "day": ZoneDayRollup},
    "device": {"minute": MinuteRollup, "hour": DeviceHourRollup, "day": DeviceDayRollup},
}
