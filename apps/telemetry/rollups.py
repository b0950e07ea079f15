"""Writing a batch's events and folding them into the minute rollups.

Every rollup change is an atomic increment (INSERT … ON CONFLICT DO UPDATE), so
concurrent batches from many devices never lose a count, and rows are always locked in
minute order, so they never deadlock. On PostgreSQL the whole batch — raw events, new
(camera, track) pairs, device, zone and site rollups — is one statement with the events
sent as arrays: one round trip however many minutes the batch spans. The embedded
SQLite default runs the same steps as separate statements."""
from collections import defaultdict

import psycopg
from django.db import connection

from .models import EmotionEvent, MinuteRollup, RollupTrack, SiteMinuteRollup, ZoneMinuteRollup

#: One clean event: (ts, camera_id, track, label, confidence).
EVENT_FIELDS = ("ts", "camera_id", "track", "label", "confidence")
COUNTS = ("negative", "neutral", "positive", "tracks")


def store_batch(device, events) -> list:
    """Stores clean events and adds them to the rollups. Returns the minutes touched,
    oldest first. Call inside the batch's transaction."""
    if not events:
        return []
    if connection.vendor == "postgresql":
        return _store_postgresql(device, events)
    return _store_portable(device, events)


def _upsert(table, keys, conflict_key):
    """`INSERT … ON CONFLICT … DO UPDATE` adding counts; takes `(keys…, minute, counts…)` rows."""
    q = connection.ops.quote_name
    keys = [f"{k}_id" for k in keys]
    increments = ", ".join(f"{c} = {q(table)}.{c} + excluded.{c}" for c in COUNTS)
    return (f"INSERT INTO {q(table)} ({', '.join(keys)}, minute, {', '.join(COUNTS)})",
            f"ON CONFLICT ({conflict_key}, minute) DO UPDATE SET {increments}")


def _levels(device):
    """(table, keys, conflict column) of each rollup a device feeds, in lock order."""
    levels = [(MinuteRollup._meta.db_table, ("device", "site", "zone"), "device_id")]
    if device.zone_id:
        levels.append((ZoneMinuteRollup._meta.db_table, ("zone", "site"), "zone_id"))
    levels.append((SiteMinuteRollup._meta.db_table, ("site",), "site_id"))
    return levels


#: The batch's keys as typed parameters (a NULL zone has no type of its own).
KEYS = {"device": "%(device)s::uuid", "site": "%(site)s::bigint", "zone": "%(zone)s::bigint"}


def _store_postgresql(device, events):
    q = connection.ops.quote_name
    ts, cameras, tracks, labels, confidences = zip(*events)
    params = {"device": device.id, "site": device.site_id, "zone": device.zone_id, "ts": list(ts),
              "camera": list(cameras), "track": list(tracks), "label": list(labels), "confidence": list(confidences)}
    counts = ", ".join(COUNTS)
    ctes = [
        f"""ev AS (SELECT * FROM unnest(%(ts)b::timestamptz[], %(camera)b::bigint[], %(track)b::text[],
                                        %(label)b::smallint[], %(confidence)b::float8[])
                   AS e(ts, camera_id, track, label, confidence))""",
        f"""raw AS (INSERT INTO {q(EmotionEvent._meta.db_table)}
                    (device_id, site_id, zone_id, camera_id, ts, track, label, confidence)
                    SELECT {KEYS["device"]}, {KEYS["site"]}, {KEYS["zone"]}, camera_id, ts, track, label, confidence
                    FROM ev)""",
        # Only pairs not seen before in that minute are inserted: they are the new tracks.
        f"""seen AS (INSERT INTO {q(RollupTrack._meta.db_table)} (device_id, minute, camera_id, track)
                     SELECT DISTINCT {KEYS["device"]}, date_trunc('minute', ts), camera_id, track FROM ev
                     ORDER BY 2, 3, 4 ON CONFLICT DO NOTHING RETURNING minute)""",
        """counts AS (SELECT c.minute, c.negative, c.neutral, c.positive, coalesce(s.tracks, 0) AS tracks
                      FROM (SELECT date_trunc('minute', ts) AS minute, count(*) FILTER (WHERE label = 0) AS negative,
                                   count(*) FILTER (WHERE label = 1) AS neutral,
                                   count(*) FILTER (WHERE label = 2) AS positive
                            FROM ev GROUP BY 1) c
                      LEFT JOIN (SELECT minute, count(*) AS tracks FROM seen GROUP BY minute) s USING (minute))""",
    ]
    upserts = []
    for table, keys, conflict_key in _levels(device):
        head, tail = _upsert(table, keys, conflict_key)
        upserts.append(f"{head} SELECT {', '.join(KEYS[k] for k in keys)}, minute, {counts} FROM counts "
                       f"ORDER BY minute {tail}")
    ctes += [f"level{i} AS ({upsert})" for i, upsert in enumerate(upserts[:-1])]
    # A server-side binding cursor on Django's connection (and transaction): the arrays
    # travel in binary, three times cheaper than Django's client-side quoting.
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(f"WITH {', '.join(ctes)} {upserts[-1]} RETURNING minute", params)
        return sorted(row[0] for row in cursor.fetchall())


def _store_portable(device, events):
    EmotionEvent.objects.bulk_create(
        [EmotionEvent(device_id=device.id, site_id=device.site_id, zone_id=device.zone_id,
                      **dict(zip(EVENT_FIELDS, e))) for e in events], batch_size=500)
    counts = defaultdict(lambda: [0, 0, 0])
    pairs = defaultdict(set)
    for ts, camera_id, track, label, _ in events:
        minute = ts.replace(second=0, microsecond=0)
        counts[minute][label] += 1
        pairs[minute].add((camera_id, track))
    minutes = sorted(counts)
    adapt = connection.ops.adapt_datetimefield_value
    keys = {"device": device._meta.pk.get_db_prep_value(device.id, connection), "site": device.site_id,
            "zone": device.zone_id}
    with connection.cursor() as cursor:
        new_tracks = {}
        for m in minutes:
            rows = sorted(pairs[m])
            cursor.execute(
                f"INSERT INTO {connection.ops.quote_name(RollupTrack._meta.db_table)} (device_id, minute, camera_id, track) "
                f"VALUES {', '.join(['(%s, %s, %s, %s)'] * len(rows))} ON CONFLICT DO NOTHING",
                [v for cam, track in rows for v in (keys["device"], adapt(m), cam, track)])
            new_tracks[m] = cursor.rowcount
        for table, level_keys, conflict_key in _levels(device):
            head, tail = _upsert(table, level_keys, conflict_key)
            rows = [(*(keys[k] for k in level_keys), adapt(m), *counts[m], new_tracks[m]) for m in minutes]
            placeholders = ", ".join("(" + ", ".join(["%s"] * len(rows[0])) + ")" for _ in rows)
            cursor.execute(f"{head} VALUES {placeholders} {tail}", [v for row in rows for v in row])
    return minutes
