"""Writing a batch's events and folding them into the minute rollups.

Each statement is set-based and every rollup change is an atomic increment
(INSERT … ON CONFLICT DO UPDATE), so concurrent batches from many devices never wait on
each other and never lose a count. PostgreSQL gets the events by COPY."""
from collections import defaultdict

from django.db import connection

from .models import EmotionEvent, MinuteRollup, RollupTrack, SiteMinuteRollup, ZoneMinuteRollup

EVENT_COLUMNS = ("device_id", "site_id", "zone_id", "camera_id", "ts", "track", "label", "confidence")


def store_events(device, events):
    rows = [(device.id, device.site_id, device.zone_id, e["camera"].id, e["ts"], e["track"], e["label"],
             e["confidence"]) for e in events]
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(EmotionEvent._meta.db_table)
        with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY {table} ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
    else:
        EmotionEvent.objects.bulk_create([EmotionEvent(**dict(zip(EVENT_COLUMNS, row))) for row in rows], batch_size=500)


def _insert_many(cursor, sql_head, rows, sql_tail=""):
    placeholders = ", ".join("(" + ", ".join(["%s"] * len(rows[0])) + ")" for _ in rows)
    cursor.execute(f"{sql_head} VALUES {placeholders} {sql_tail}", [v for row in rows for v in row])


def update_rollups(device, events) -> list:
    """Adds the events to the device's, its zone's and its site's minute rollups.
    Returns the minutes touched, oldest first."""
    counts = defaultdict(lambda: [0, 0, 0])
    tracks = defaultdict(set)
    for e in events:
        minute = e["ts"].replace(second=0, microsecond=0)
        counts[minute][e["label"]] += 1
        tracks[minute].add((e["camera"].id, e["track"]))
    if not counts:
        return []
    adapt = connection.ops.adapt_datetimefield_value
    q = connection.ops.quote_name
    device_id = device._meta.pk.get_db_prep_value(device.id, connection)  # hex text on SQLite
    with connection.cursor() as cursor:
        # Only pairs not seen before in that minute are inserted: they are the new tracks.
        new_tracks = {}
        for m, pairs in tracks.items():
            _insert_many(cursor, f"INSERT INTO {q(RollupTrack._meta.db_table)} (device_id, minute, camera_id, track)",
                         [(device_id, adapt(m), cam, track) for cam, track in pairs], "ON CONFLICT DO NOTHING")
            new_tracks[m] = cursor.rowcount
        levels = [(MinuteRollup, ("device_id", "site_id", "zone_id"), (device_id, device.site_id, device.zone_id), "device_id"),
                  (SiteMinuteRollup, ("site_id",), (device.site_id,), "site_id")]
        if device.zone_id:
            levels.append((ZoneMinuteRollup, ("zone_id", "site_id"), (device.zone_id, device.site_id), "zone_id"))
        for model, keys, key_values, conflict_key in levels:
            table = q(model._meta.db_table)
            rows = [(*key_values, adapt(m), neg, neu, pos, new_tracks[m])
                    for m, (neg, neu, pos) in counts.items()]
            increments = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in ("negative", "neutral", "positive", "tracks"))
            _insert_many(
                cursor,
                f"INSERT INTO {table} ({', '.join(keys)}, minute, negative, neutral, positive, tracks)",
                rows,
                f"ON CONFLICT ({conflict_key}, minute) DO UPDATE SET {increments}",
            )
    return sorted(counts)
