"""Raw events and track tallies in PostgreSQL day partitions (apps/telemetry/partitions.py):
the migration converts a populated database without losing a row, late rows are moved
out of the DEFAULT partition, and retention drops whole days."""
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from apps.telemetry import partitions
from apps.telemetry.ingest import ingest
from apps.telemetry.models import EmotionEvent, RollupTrack
from apps.telemetry.retention import ensure_partitions, purge_expired


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("partitions are a PostgreSQL feature; SQLite keeps plain tables")


def send(device, ts, n, track="t"):
    events = [{"ts": (ts + timedelta(seconds=i)).isoformat(), "camera": "cam0", "track": f"{track}{i % 3}",
               "label": "negative", "confidence": 0.9} for i in range(n)]
    answer, _ = ingest(device, {"batch_id": str(uuid.uuid4()), "events": events})
    assert answer["accepted"] == n, answer


def rows(model):
    return sorted(model.objects.values_list("id", *[f.attname for f in model._meta.fields if f.attname != "id"]))


def where(table, pk):
    """The partition that holds the row."""
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT tableoid::regclass::text FROM "{table}" WHERE id = %s', [pk])
        return cursor.fetchone()[0]


def constraints():
    """{(table, type, definition)} of the raw tables' constraints other than the primary key."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = ANY(%s::regclass[]) AND contype <> 'p'", [[t for t, _ in partitions.TABLES]])
        return set(cursor.fetchall())


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("telemetry", target)])


@pytest.mark.django_db(transaction=True)
def test_the_migration_converts_a_populated_database_and_back(tenant):
    now = timezone.now().replace(second=0, microsecond=0)  # each batch's 7 seconds in one minute
    try:
        migrate("0003_hour_and_day_rollups")  # back to plain tables, keeping rows
        with connection.cursor() as cursor:
            assert not partitions.is_partitioned(cursor, "telemetry_emotionevent")
        for days in (0, 1, 3, 6):
            send(tenant.device, now - timedelta(days=days, minutes=5), 7, track=f"d{days}-")
        before = {model: rows(model) for model in (EmotionEvent, RollupTrack)}
        checks = constraints()
        assert len(before[EmotionEvent]) == 28 and len(before[RollupTrack]) == 12
        migrate("0004_partition_raw_tables")
        with connection.cursor() as cursor:
            for table, _ in partitions.TABLES:
                assert partitions.is_partitioned(cursor, table)
            days = partitions.day_partitions(cursor, "telemetry_emotionevent")
        assert {model: rows(model) for model in before} == before  # every row, with its id
        assert constraints() == checks  # CHECK, UNIQUE and foreign keys kept (the key now holds the day)
        assert {(now - timedelta(days=d, minutes=5)).date() for d in (0, 1, 3, 6)} <= set(days)
        oldest = min(before[EmotionEvent])
        assert where("telemetry_emotionevent", oldest[0]).startswith("telemetry_emotionevent_p")
        # Ingest goes on, with new ids after the old ones.
        send(tenant.device, now - timedelta(minutes=1), 2, track="after-")
        assert EmotionEvent.objects.count() == 30
        assert min(EmotionEvent.objects.filter(track__startswith="after-").values_list("id", flat=True)) > \
            max(r[0] for r in before[EmotionEvent])
    finally:
        migrate("0004_partition_raw_tables")


@pytest.mark.django_db
def test_rows_written_before_their_day_had_a_partition_are_moved_into_it(tenant):
    day = (timezone.now() - timedelta(days=20)).replace(hour=12)
    event = EmotionEvent.objects.create(device=tenant.device, site=tenant.site, camera=tenant.device.cameras.first(),
                                        ts=day, track="late", label=0, confidence=0.5)
    assert where("telemetry_emotionevent", event.id) == "telemetry_emotionevent_default"
    with connection.cursor() as cursor:
        assert partitions.make_partitions(cursor, day.date(), day.date()) == 2  # events and tallies
        assert partitions.make_partitions(cursor, day.date(), day.date()) == 0
    assert where("telemetry_emotionevent", event.id) == partitions.partition_name("telemetry_emotionevent", day.date())
    assert EmotionEvent.objects.filter(id=event.id, track="late").exists()


@pytest.mark.django_db
def test_retention_drops_whole_days_and_keeps_the_rest(tenant, settings):
    now = timezone.now()
    keep = settings.AFFECTWATCH["EVENT_RETENTION_DAYS"]
    ensure_partitions(now)
    send(tenant.device, now - timedelta(days=2), 5, track="recent-")
    old = now - timedelta(days=keep + 3)
    EmotionEvent.objects.create(device=tenant.device, site=tenant.site, camera=tenant.device.cameras.first(),
                                ts=old, track="old", label=0, confidence=0.5)
    with connection.cursor() as cursor:
        partitions.make_partitions(cursor, old.date(), old.date())
        assert old.date() in partitions.day_partitions(cursor, "telemetry_emotionevent")
    out = purge_expired(now)
    assert out["event_partitions"] >= 2 and out["events"] == 0  # dropped, not deleted row by row
    with connection.cursor() as cursor:
        assert old.date() not in partitions.day_partitions(cursor, "telemetry_emotionevent")
        assert (now - timedelta(days=2)).date() in partitions.day_partitions(cursor, "telemetry_emotionevent")
    assert set(EmotionEvent.objects.values_list("track", flat=True)) == {"recent-0", "recent-1", "recent-2"}


@pytest.mark.django_db
def test_partitions_are_made_ahead_for_every_day_ingest_accepts(settings):
    later = timezone.now() + timedelta(days=40)  # beyond what the migration made
    first = (later - settings.AFFECTWATCH["INGEST_MAX_PAST"]).date()
    want = {first + timedelta(days=i)
            for i in range((later.date() - first).days + settings.AFFECTWATCH["PARTITION_AHEAD_DAYS"] + 1)}
    with connection.cursor() as cursor:
        missing = sum(len(want - set(partitions.day_partitions(cursor, table))) for table, _ in partitions.TABLES)
    assert missing == 2 * len(want)
    assert ensure_partitions(later) == missing
    with connection.cursor() as cursor:
        for table, _ in partitions.TABLES:
            assert want <= set(partitions.day_partitions(cursor, table)), table
    assert ensure_partitions(later) == 0
