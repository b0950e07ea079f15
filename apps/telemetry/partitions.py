"""Raw events and track tallies in PostgreSQL partitions, one per UTC day.

The two largest tables — `EmotionEvent` (by `ts`) and `RollupTrack` (by `minute`) — are
declaratively partitioned by range: one partition per UTC day, named `<table>_pYYYYMMDD`,
plus a DEFAULT partition that catches any row outside them, so an ingest never fails
for want of a partition. Beat runs `make_partitions` every few hours to create the days
from INGEST_MAX_PAST ago to PARTITION_AHEAD_DAYS ahead; retention (`purge`) detaches and
drops whole days once they are entirely older than the cutoff — a catalogue change,
not a `DELETE` that scans, bloats and competes with ingest. Retention is therefore by
whole UTC days: a row goes at the first purge after the end of its day passes the cutoff.

A partitioned table's primary key must contain the partition key, so the database's
key is (id, ts) / (id, minute); Django still addresses rows by `id`, which the identity
column keeps unique. Unique constraints already contain the partition key.

`convert` and `revert` turn a plain table into a partitioned one and back, keeping every
row, id, constraint and index (migration 0004). The embedded SQLite default keeps plain
tables; every function here is for PostgreSQL only.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone as dt_timezone

#: (table, partition key) of every partitioned table.
TABLES = (("telemetry_emotionevent", "ts"), ("telemetry_rolluptrack", "minute"))
DAY = timedelta(days=1)


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def _bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=dt_timezone.utc)
    return start, start + DAY


def is_partitioned(cursor, table: str) -> bool:
    cursor.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)", [table])
    row = cursor.fetchone()
    return bool(row and row[0])


def day_partitions(cursor, table: str) -> dict[date, str]:
    """The table's day partitions: day → partition name (the DEFAULT one is not listed)."""
    cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                   "WHERE i.inhparent = to_regclass(%s)", [table])
    pattern = re.compile(re.escape(table) + r"_p(\d{8})$")
    out = {}
    for (name,) in cursor.fetchall():
        m = pattern.match(name)
        if m:
            out[datetime.strptime(m.group(1), "%Y%m%d").date()] = name
    return out


def _definitions(cursor, table: str):
    """(constraints, indexes) of a table as SQL: [(name, type, definition)], [(name, CREATE INDEX …)]."""
    cursor.execute("SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                   "WHERE conrelid = to_regclass(%s) AND contype IN ('p', 'u', 'f', 'c') ORDER BY contype, conname", [table])
    constraints = cursor.fetchall()
    owned = {name for name, _, _ in constraints}
    cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname", [table])
    indexes = [(name, sql) for name, sql in cursor.fetchall() if name not in owned]
    return constraints, indexes


def _rebuild(cursor, table: str, column: str, partition: bool) -> None:
    """Moves the table's rows into a new table of the same name, partitioned or plain,
    with the same columns, identity, constraints and indexes."""
    constraints, indexes = _definitions(cursor, table)
    old = f"{table}_old"
    cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{old}"')
    for name, kind, _ in sorted(constraints, key=lambda c: c[1] != "f"):  # foreign keys first
        cursor.execute(f'ALTER TABLE "{old}" DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    by = f' PARTITION BY RANGE ("{column}")' if partition else ""
    cursor.execute(f'CREATE TABLE "{table}" (LIKE "{old}" INCLUDING DEFAULTS INCLUDING IDENTITY){by}')
    for name, kind, definition in constraints:
        if kind == "p":
            definition = f'PRIMARY KEY ("id", "{column}")' if partition else 'PRIMARY KEY ("id")'
        cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    for _, sql in indexes:
        cursor.execute(sql)
    if partition:
        cursor.execute(f'CREATE TABLE "{table}_default" PARTITION OF "{table}" DEFAULT')
        cursor.execute(f'SELECT DISTINCT ("{column}" AT TIME ZONE \'UTC\')::date FROM "{old}"')
        for (day,) in cursor.fetchall():
            ensure_day(cursor, table, column, day)
    cursor.execute(f'INSERT INTO "{table}" SELECT * FROM "{old}"')
    cursor.execute(f"SELECT setval(pg_get_serial_sequence(%s, 'id'), coalesce(max(id), 0) + 1, false) FROM \"{table}\"",
                   [table])
    cursor.execute(f'DROP TABLE "{old}" CASCADE')


def convert(cursor, table: str, column: str) -> None:
    """Plain table → partitioned by day on `column`, keeping every row. No-op when it is already."""
    if not is_partitioned(cursor, table):
        _rebuild(cursor, table, column, partition=True)


def revert(cursor, table: str, column: str) -> None:
    """Partitioned table → one plain table, keeping every row. No-op when it is plain."""
    if is_partitioned(cursor, table):
        _rebuild(cursor, table, column, partition=False)


def ensure_day(cursor, table: str, column: str, day: date) -> bool:
    """Creates the day's partition unless it exists. Rows of that day already in the
    DEFAULT partition (written while the day had no partition) are moved into it.
    Returns True when a partition was created."""
    name = partition_name(table, day)
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
    if cursor.fetchone()[0]:
        return False
    lo, hi = _bounds(day)
    default = f"{table}_default"
    cursor.execute(f'SELECT EXISTS (SELECT 1 FROM "{default}" WHERE "{column}" >= %s AND "{column}" < %s)', [lo, hi])
    stranded = cursor.fetchone()[0]
    if stranded:  # PostgreSQL refuses a partition whose rows sit in DEFAULT: move them in
        cursor.execute(f'ALTER TABLE "{table}" DETACH PARTITION "{default}"')
    cursor.execute(f'CREATE TABLE "{name}" PARTITION OF "{table}" FOR VALUES FROM (%s) TO (%s)', [lo, hi])
    if stranded:
        cursor.execute(f'WITH moved AS (DELETE FROM "{default}" WHERE "{column}" >= %s AND "{column}" < %s '
                       f'RETURNING *) INSERT INTO "{table}" SELECT * FROM moved', [lo, hi])
        cursor.execute(f'ALTER TABLE "{table}" ATTACH PARTITION "{default}" DEFAULT')
    return True


def make_partitions(cursor, first: date, last: date) -> int:
    """Creates every missing day partition of every partitioned table from `first` to
    `last` (inclusive). Returns how many were created."""
    created = 0
    for table, column in TABLES:
        if not is_partitioned(cursor, table):
            continue
        day = first
        while day <= last:
            created += ensure_day(cursor, table, column, day)
            day += DAY
    return created


def purge(cursor, cutoff: datetime) -> dict:
    """Drops the day partitions that end at or before `cutoff` and deletes the DEFAULT
    partitions' rows older than it. Returns {"partitions": dropped, "rows": deleted}."""
    dropped = deleted = 0
    # Foreign keys are checked at commit (Django's are deferred); a partition with rows
    # whose checks are still pending in this transaction cannot be dropped.
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for table, column in TABLES:
        if not is_partitioned(cursor, table):
            continue
        for day, name in sorted(day_partitions(cursor, table).items()):
            if _bounds(day)[1] <= cutoff:
                cursor.execute(f'ALTER TABLE "{table}" DETACH PARTITION "{name}"')
                cursor.execute(f'DROP TABLE "{name}"')
                dropped += 1
        cursor.execute(f'DELETE FROM "{table}_default" WHERE "{column}" < %s', [cutoff])
        deleted += cursor.rowcount
    return {"partitions": dropped, "rows": deleted}
