"""Validating and storing a batch of label events, with its rollups, in one transaction."""
import math
import uuid
from datetime import datetime, timezone as dt_timezone

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.sites.models import Camera, Device

from .models import LABEL_BY_NAME, IngestBatch
from .rollups import store_events, update_rollups


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
        ts = parse_datetime(value.replace("Z", "+00:00"))
        if ts is None:
            raise ValueError
        if timezone.is_naive(ts):
            raise ValueError("timestamp needs a UTC offset")
        return ts
    raise ValueError


def validate_event(event, cameras: dict, now) -> tuple[dict | None, str | None]:
    """Returns (clean event, None) or (None, reason)."""
    if not isinstance(event, dict):
        return None, "event must be an object"
    missing = [k for k in ("ts", "camera", "track", "label", "confidence") if k not in event]
    if missing:
        return None, f"missing field(s): {', '.join(missing)}"
    label = LABEL_BY_NAME.get(event["label"]) if isinstance(event["label"], str) else None
    if label is None:
        return None, f"unknown label {str(event['label'])[:40]!r}; expected negative, neutral or positive"
    conf = event["confidence"]
    if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0.0 <= conf <= 1.0:
        return None, "confidence must be a number in [0, 1]"
    try:
        ts = _parse_ts(event["ts"])
    except (ValueError, OverflowError, OSError) as exc:
        return None, f"invalid timestamp {str(event['ts'])[:40]!r}" + (f": {exc}" if str(exc) else "")
    if ts > now + settings.AFFECTWATCH["INGEST_MAX_FUTURE"]:
        return None, "timestamp is in the future"
    if ts < now - settings.AFFECTWATCH["INGEST_MAX_PAST"]:
        return None, "timestamp is too far in the past"
    track = event["track"]
    if isinstance(track, bool) or not isinstance(track, (str, int)) or not str(track) or len(str(track)) > 64:
        return None, "track must be a string or integer of 1-64 characters"
    camera = cameras.get(event["camera"]) if isinstance(event["camera"], str) else None
    if camera is None:
        return None, f"unknown camera {str(event['camera'])[:64]!r}"
    return {"ts": ts, "camera": camera, "track": str(track), "label": label, "confidence": float(conf)}, None


def ingest(device: Device, body) -> tuple[dict, list]:
    """Stores a batch. Returns (response body, touched minutes) — minutes are empty for a
    duplicate. Raises BatchError for a malformed batch."""
    batch_id, raw_events = parse_batch(body)
    existing = IngestBatch.objects.filter(device=device, batch_id=batch_id).first()
    if existing:
        return _answer(existing, duplicate=True), []
    cameras = {c.name: c for c in Camera.objects.filter(device=device)}
    now = timezone.now()
    clean, rejected = [], []
    for index, raw in enumerate(raw_events):
        event, reason = validate_event(raw, cameras, now)
        if reason:
            rejected.append({"index": index, "reason": reason})
        else:
            clean.append(event)
    try:
        with transaction.atomic():
            batch = IngestBatch.objects.create(device=device, batch_id=batch_id, accepted=len(clean), rejected=rejected)
            store_events(device, clean)
            minutes = update_rollups(device, clean)
    except IntegrityError:
        # The same batch raced in on another connection and won: answer as a retry.
        existing = IngestBatch.objects.get(device=device, batch_id=batch_id)
        return _answer(existing, duplicate=True), []
    return _answer(batch, duplicate=False), minutes


def _answer(batch, duplicate):
    return {"batch_id": str(batch.batch_id), "accepted": batch.accepted, "rejected": batch.rejected, "duplicate": duplicate}
