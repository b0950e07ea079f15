"""Validating and storing a batch of label events, with its rollups, in one transaction."""
import math
import time
import uuid
from datetime import datetime, timezone as dt_timezone
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from apps.sites.models import Device

from . import metrics
from .models import LABEL_BY_NAME, IngestBatch
from .rollups import is_lock_timeout, lock_device, store_batch


class BatchError(ValueError):
    """The batch as a whole is malformed (400)."""


def parse_batch(body) -> tuple[uuid.UUID, list]:
    if not isinstance(body, dict):
        raise BatchError("body must be a JSON object with 'batch_id' and 'events'")
    try:
        batch_id = uuid.UUID(str(body.get("batch_id")))
    except ValueError:
        raise BatchError("batch_id must be a UUID") from None
    events = body.get("events")
    if not isinstance(events, list):
        raise BatchError("events must be a list")
    limit = settings.AFFECTWATCH["INGEST_MAX_EVENTS"]
    if len(events) > limit:
        raise BatchError(f"at most {limit} events per batch, got {len(events)}")
    return batch_id, events


def _parse_ts(value):
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError
        return datetime.fromtimestamp(value, tz=dt_timezone.utc)
    if isinstance(value, str):
        ts = datetime.fromisoformat(value)  # ISO 8601, 'Z' included
        if ts.tzinfo is None:
            raise ValueError("timestamp needs a UTC offset")
        return ts.astimezone(dt_timezone.utc)  # minutes are UTC minutes, whatever the offset (+00:00:30)
    raise ValueError


EVENT_KEYS = ("ts", "camera", "track", "label", "confidence")


class Rejection(NamedTuple):
    """Why an event was refused: a code for metrics (a bounded set) and the sentence the
    board gets back."""

    code: str
    sentence: str


class EventValidator:
    """Checks raw events against one device's cameras ({name: id}) and the accepted time
    window around `now`."""

    def __init__(self, cameras: dict, now):
        self.cameras = cameras
        self.earliest = now - settings.AFFECTWATCH["INGEST_MAX_PAST"]
        self.latest = now + settings.AFFECTWATCH["INGEST_MAX_FUTURE"]

    def __call__(self, event) -> tuple[tuple | None, Rejection | None]:
        """Returns (clean event as rollups.EVENT_FIELDS, None) or (None, why)."""
        if not isinstance(event, dict):
            return None, Rejection("not_an_object", "event must be an object")
        try:
            ts, camera, track, label, conf = (event[k] for k in EVENT_KEYS)
        except KeyError:
            missing = [k for k in EVENT_KEYS if k not in event]
            return None, Rejection("missing_field", f"missing field(s): {', '.join(missing)}")
        label_value = LABEL_BY_NAME.get(label) if isinstance(label, str) else None
        if label_value is None:
            return None, Rejection("unknown_label",
                                   f"unknown label {str(label)[:40]!r}; expected negative, neutral or positive")
        if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0.0 <= conf <= 1.0:
            return None, Rejection("bad_confidence", "confidence must be a number in [0, 1]")
        try:
            when = _parse_ts(ts)
        except (ValueError, OverflowError, OSError) as exc:
            return None, Rejection("bad_timestamp", f"invalid timestamp {str(ts)[:40]!r}" + (f": {exc}" if str(exc) else ""))
        if when > self.latest:
            return None, Rejection("future", "timestamp is in the future")
        if when < self.earliest:
            return None, Rejection("too_old", "timestamp is too far in the past")
        if isinstance(track, bool) or not isinstance(track, (str, int)) or not 0 < len(str(track)) <= 64:
            return None, Rejection("bad_track", "track must be a string or integer of 1-64 characters")
        if not str(track).isprintable():  # NUL, control characters, lone surrogates
            return None, Rejection("bad_track", "track must be printable text (no control characters or lone surrogates)")
        camera_id = self.cameras.get(camera) if isinstance(camera, str) else None
        if camera_id is None:
            return None, Rejection("unknown_camera", f"unknown camera {str(camera)[:64]!r}")
        return (when, camera_id, str(track), label_value, float(conf)), None


class DeviceRemoved(Exception):
    """The device was deleted while its batch waited (401: it is no longer enrolled)."""


class DeviceBusy(Exception):
    """The batch waited INGEST_LOCK_WAIT_S for its board's lock (429: try again)."""


def ingest(device: Device, body) -> tuple[dict, list]:
    """Stores a batch. Returns (response body, touched minutes) — minutes are empty for a
    duplicate. Raises BatchError for a malformed batch, DeviceRemoved when the device was
    deleted meanwhile and DeviceBusy when its lock was not granted in time. Counts what it
    did in `metrics` (events accepted, rejections by reason, batch outcome and seconds)."""
    started = time.perf_counter()
    try:
        batch_id, raw_events = parse_batch(body)
    except BatchError:
        metrics.BATCHES.labels("malformed").inc()
        raise
    try:
        with transaction.atomic():
            # The cameras, site and zone are read under the device's lock, which deleting
            # any of them takes too: the events table has no database foreign keys.
            lock_device(device.pk, wait_s=settings.AFFECTWATCH["INGEST_LOCK_WAIT_S"])
            rows = list(Device.objects.filter(pk=device.pk).values_list("site_id", "zone_id", "cameras__name",
                                                                       "cameras__id"))
            if not rows:
                metrics.BATCHES.labels("removed").inc()
                raise DeviceRemoved(f"device {device.pk} is no longer enrolled")
            device.site_id, device.zone_id = rows[0][:2]
            validate = EventValidator({name: pk for *_, name, pk in rows if name is not None}, timezone.now())
            clean, rejected, codes = [], [], []
            for index, raw in enumerate(raw_events):
                event, why = validate(raw)
                if why:
                    rejected.append({"index": index, "reason": why.sentence})
                    codes.append(why.code)
                else:
                    clean.append(event)
            # A retried batch fails here on the (device, batch_id) constraint, before
            # anything else is written.
            batch = IngestBatch.objects.create(device=device, batch_id=batch_id, accepted=len(clean), rejected=rejected)
            minutes = store_batch(device, clean)
    except OperationalError as exc:
        if not is_lock_timeout(exc):
            raise
        metrics.BATCHES.labels("busy").inc()
        raise DeviceBusy(f"device {device.pk} is busy (another batch, or a deletion, holds it)") from None
    except IntegrityError:
        existing = IngestBatch.objects.filter(device=device, batch_id=batch_id).first()
        if existing is None:  # not a retry: something else broke a constraint
            raise
        metrics.BATCHES.labels("duplicate").inc()
        return _answer(existing, duplicate=True), []
    metrics.EVENTS_ACCEPTED.inc(len(clean))
    for code in codes:  # counted once, for a stored batch (not again for its retries)
        metrics.EVENTS_REJECTED.labels(code).inc()
    metrics.BATCHES.labels("stored").inc()
    metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
    return _answer(batch, duplicate=False), minutes


def _answer(batch, duplicate):
    return {"batch_id": str(batch.batch_id), "accepted": batch.accepted, "rejected": batch.rejected, "duplicate": duplicate}
