"""Writing a batch's events and folding them into the raw minute cells.

What a batch adds is *bounded*: one track adds at most DP_MAX_DETECTIONS detections to a
minute (the first ones; `RollupTrack.detections` keeps the tally across batches), which
is the sensitivity the noise of `privacy.py` is calibrated to. Raw cells are never
published; `release.py` noises each one once, after its minute closed.

Every count change is an atomic increment (INSERT … ON CONFLICT DO UPDATE), rows are
locked in minute order so concurrent batches never deadlock, and one device's batches
are serialised (`lock_device`) so two of them cannot both spend a track's allowance. On
PostgreSQL the whole batch — raw events, (camera, track) tallies and raw cells — is one
statement with the events sent as arrays. The embedded SQLite default runs the same
steps in Python."""
from collections import Counter, defaultdict

import psycopg
from django.conf import settings
from django.db import OperationalError, connection

from .models import EmotionEvent, RawMinute, RollupTrack

#: One clean event: (ts, camera_id, track, label, confidence).
EVENT_FIELDS = ("ts", "camera_id", "track", "label", "confidence")
COUNTS = ("negative", "neutral", "positive", "tracks")


def lock_device(device_id, wait_s: float | None = None) -> None:
    """Serialises, until the current transaction ends, everything that writes a device's
    telemetry or removes a row its events refer to: the device's batches (`ingest`), and
    deleting the device, one of its cameras or its zone (`signals.py`). Two batches of
    one device then never both spend a track's allowance, and no event can name a camera,
    zone or device deleted meanwhile. PostgreSQL: a transaction-level advisory lock;
    SQLite serialises all writers already. Call inside a transaction. `wait_s`: no lock
    of the rest of the transaction (this one included) waits longer; past it, PostgreSQL
    raises lock_not_available (`is_lock_timeout`). None: wait as configured."""
    if connection.vendor != "postgresql":
        return
    sql, params = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"telemetry.device:{device_id}"]
    if wait_s is not None:  # in the same round trip (Django's cursors bind on the client)
        sql, params = f"SET LOCAL lock_timeout = %s; {sql}", [f"{int(wait_s * 1000)}ms", *params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def is_lock_timeout(exc: Exception) -> bool:
    """Whether a database error is PostgreSQL's lock_not_available (SQLSTATE 55P03)."""
    return isinstance(exc, OperationalError) and getattr(exc.__cause__, "sqlstate", None) == "55P03"


def store_batch(device, events) -> list:
    """Stores clean events and adds their bounded counts to the raw cells. Returns the
    minutes touched, oldest first. Call inside the batch's transaction, holding
    `lock_device`."""
    if not events:
        return []
    cap = settings.AFFECTWATCH["DP_MAX_DETECTIONS"]
    if connection.vendor == "postgresql":
        return _store_postgresql(device, events, cap)
    return _store_portable(device, events, cap)


def _upsert_raw():
    q = connection.ops.quote_name
    table = q(RawMinute._meta.db_table)
    increments = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in COUNTS)
    return (f"INSERT INTO {table} (device_id, minute, {', '.join(COUNTS)})",
            f"ON CONFLICT (device_id, minute) DO UPDATE SET {increments}")


def _store_postgresql(device, events, cap):
    q = connection.ops.quote_name
    ts, cameras, tracks, labels, confidences = zip(*events)
    params = {"device": device.id, "site": device.site_id, "zone": device.zone_id, "ts": list(ts),
              "camera": list(cameras), "track": list(tracks), "label": list(labels), "confidence": list(confidences),
              "cap": cap, "first": min(ts).replace(second=0, microsecond=0), "last": max(ts)}
    tally = q(RollupTrack._meta.db_table)
    head, tail = _upsert_raw()
    sql = f"""
    WITH ev AS (
        SELECT e.*, date_trunc('minute', e.ts) AS minute,
               row_number() OVER (PARTITION BY date_trunc('minute', e.ts), e.camera_id, e.track ORDER BY e.ts) AS rn
        FROM unnest(%(ts)b::timestamptz[], %(camera)b::bigint[], %(track)b::text[], %(label)b::smallint[],
                    %(confidence)b::float8[]) AS e(ts, camera_id, track, label, confidence)),
    raw AS (INSERT INTO {q(EmotionEvent._meta.db_table)}
            (device_id, site_id, zone_id, camera_id, ts, track, label, confidence)
            SELECT %(device)s::uuid, %(site)s::bigint, %(zone)s::bigint, camera_id, ts, track, label, confidence FROM ev),
    -- The tallies before this statement (every CTE reads the same snapshot).
    prior AS (SELECT t.minute, t.camera_id, t.track, t.detections FROM {tally} t
              WHERE t.device_id = %(device)s::uuid AND t.minute IN (SELECT DISTINCT minute FROM ev)
                    -- constant bounds: the planner prunes the other day partitions, so the
                    -- statement neither plans nor locks them
                    AND t.minute BETWEEN %(first)s AND %(last)s),
    kept AS (SELECT ev.minute, ev.camera_id, ev.track, ev.label, p.detections IS NULL AS new_track
             FROM ev LEFT JOIN prior p USING (minute, camera_id, track)
             WHERE coalesce(p.detections, 0) + ev.rn <= %(cap)s),
    seen AS (INSERT INTO {tally} (device_id, minute, camera_id, track, detections)
             SELECT %(device)s::uuid, minute, camera_id, track, count(*) FROM kept GROUP BY 2, 3, 4 ORDER BY 2, 3, 4
             ON CONFLICT (device_id, minute, camera_id, track)
             DO UPDATE SET detections = {tally}.detections + excluded.detections),
    counts AS (SELECT minute, count(*) FILTER (WHERE label = 0) AS negative,
                      count(*) FILTER (WHERE label = 1) AS neutral, count(*) FILTER (WHERE label = 2) AS positive,
                      count(DISTINCT (camera_id, track)) FILTER (WHERE new_track) AS tracks
               FROM kept GROUP BY minute)
    {head} SELECT %(device)s::uuid, minute, {', '.join(COUNTS)} FROM counts ORDER BY minute {tail} RETURNING minute"""
    # A server-side binding cursor on Django's connection (and transaction): the arrays
    # travel in binary, three times cheaper than Django's client-side quoting.
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params)
        return sorted(row[0] for row in cursor.fetchall())


def _store_portable(device, events, cap):
    EmotionEvent.objects.bulk_create(
        [EmotionEvent(device_id=device.id, site_id=device.site_id, zone_id=device.zone_id,
                      **dict(zip(EVENT_FIELDS, e))) for e in events], batch_size=500)
    by_minute = defaultdict(list)
    for ts, camera_id, track, label, _ in sorted(events, key=lambda e: e[0]):
        by_minute[ts.replace(second=0, microsecond=0)].append((camera_id, track, label))
    minutes = sorted(by_minute)
    prior = {
        (m, cam, track): n for m, cam, track, n in RollupTrack.objects.filter(device=device, minute__in=minutes)
        .values_list("minute", "camera_id", "track", "detections")
    }
    added, cells = Counter(), {}
    for m in minutes:
        cell = [0, 0, 0, 0]
        for cam, track, label in by_minute[m]:
            key = (m, cam, track)
            if prior.get(key, 0) + added[key] >= cap:
                continue
            if key not in prior and not added[key]:
                cell[3] += 1  # a track new to this minute
            added[key] += 1
            cell[label] += 1
        cells[m] = cell
    adapt = connection.ops.adapt_datetimefield_value
    device_id = device._meta.pk.get_db_prep_value(device.id, connection)
    tally = connection.ops.quote_name(RollupTrack._meta.db_table)
    with connection.cursor() as cursor:
        rows = sorted(added.items())
        if rows:
            cursor.executemany(
                f"INSERT INTO {tally} (device_id, minute, camera_id, track, detections) VALUES (%s, %s, %s, %s, %s) "
                f"ON CONFLICT (device_id, minute, camera_id, track) DO UPDATE SET detections = {tally}.detections + excluded.detections",
                [(device_id, adapt(m), cam, track, n) for (m, cam, track), n in rows])
    add_raw_cells(device, cells)
    return minutes


def add_raw_cells(device, cells: dict) -> None:
    """Adds counts to the device's raw minute cells (atomic increments, minute order):
    cells maps a minute (aware datetime, second 0) to (negative, neutral, positive,
    tracks). What the counts add must already respect DP_MAX_DETECTIONS per track and
    minute — the bound the release noise is calibrated to. Ingest calls this on the
    portable path; the demo's history (`apps/telemetry/demo_history.py`) too."""
    adapt = connection.ops.adapt_datetimefield_value
    device_id = device._meta.pk.get_db_prep_value(device.id, connection)
    head, tail = _upsert_raw()
    minutes = sorted(cells)
    with connection.cursor() as cursor:
        for i in range(0, len(minutes), 500):
            chunk = minutes[i : i + 500]
            placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(f"{head} VALUES {placeholders} {tail}",
                           [v for m in chunk for v in (device_id, adapt(m), *map(int, cells[m]))])
