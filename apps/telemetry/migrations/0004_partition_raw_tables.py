"""PostgreSQL: raw events and track tallies become tables partitioned by UTC day, with
every row kept (apps/telemetry/partitions.py). SQLite keeps plain tables."""
from datetime import datetime, timedelta, timezone

from django.conf import settings
from django.db import migrations

from apps.telemetry import partitions


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    now = datetime.now(timezone.utc)
    with schema_editor.connection.cursor() as cursor:
        for table, column in partitions.TABLES:
            partitions.convert(cursor, table, column)
        # The days ingest accepts now; beat makes the next ones (tasks.make_partitions).
        partitions.make_partitions(cursor, (now - settings.AFFECTWATCH["INGEST_MAX_PAST"]).date(),
                                   (now + timedelta(days=settings.AFFECTWATCH["PARTITION_AHEAD_DAYS"])).date())


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, column in partitions.TABLES:
            partitions.revert(cursor, table, column)


class Migration(migrations.Migration):

    dependencies = [("telemetry", "0003_hour_and_day_rollups")]

    operations = [migrations.RunPython(forward, backward)]
