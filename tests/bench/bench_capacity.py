"""Capacity benchmarks against PostgreSQL (`make bench ARGS=capacity`): the measured inputs
of the README's capacity table.

ingest-cpu — the ingest benchmark of bench_backend (simulated agents posting 500-event
             batches to uvicorn with 2 workers, partitioned tables) with the CPU it
             costs: machine-wide busy CPU over the load window (/proc/stat) minus the
             load generator's own, split into the web processes (/proc/<pid>/stat of
             uvicorn) and the rest (PostgreSQL and Redis: PostgreSQL backends come and
             go per request, so they are measured as the remainder).
disk       — bytes on disk (tables, indexes, TOAST) per raw event and per rollup row,
             from PostgreSQL's own sizes: the purged day's events, 6 released hours of
             50 boards, the year of site rollups below.
purge      — one UTC day of N raw events (default 10 million) expired by dropping its
             partition (`retention.purge_expired`), and, in the same run, the same rows
             in a plain table with the same indexes removed by `DELETE … WHERE ts < cutoff`.
year-trend — a 50-board site with a year of site-minute rollups (525,600 rows, each the
             sum of 50 cells) and their hour and day rollups; p50 / p95 over HTTP of the
             1-year trend at day buckets and the 90-day trend at hour buckets. Baseline in
             the same run: the 1-year day trend computed from the minute rows (how trends
             were read before the hour and day levels).

Results: bench-results/capacity.json and capacity.md.
"""
import json
import os
import resource
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

from tests.bench.bench_backend import (OUT, WEB_WORKERS, bench_ingest, fresh_database, ingest_arguments, machine,
                                       make_site, setup_django, timed, web_server)

TICK = os.sysconf("SC_CLK_TCK")


def busy_cpu_s() -> float:
    """Machine-wide CPU seconds spent not idle since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


def web_cpu_s() -> float:
    """CPU seconds (user + system) of the uvicorn server and its worker processes (the
    workers are spawned children whose command lines do not name uvicorn)."""
    stats, parent = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[pid] = (cmdline, (int(stat[11]) + int(stat[12])) / TICK)
        parent[pid] = stat[1]
    roots = {pid for pid, (cmd, _) in stats.items() if b"uvicorn" in cmd and b"affectwatch.asgi" in cmd}

    def in_tree(pid):
        while pid in parent and pid != "1":
            if pid in roots:
                return True
            pid = parent[pid]
        return False

    return sum(cpu for pid, (_, cpu) in stats.items() if in_tree(pid))


def own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_meter():
    """A snapshot of (machine busy, web processes, load generator) CPU seconds."""
    return busy_cpu_s(), web_cpu_s(), own_cpu_s()


def ingest_cpu_once(env, agents, batch_size, seconds, workers):
    """bench_backend's ingest, with the CPU of its load window (see the module docstring)."""
    marks = {}
    result = bench_ingest(env, agents, batch_size, seconds, workers,
                          on_load=lambda phase: marks.__setitem__(phase, cpu_meter()))
    (b0, w0, g0), (b1, w1, g1) = marks["start"], marks["end"]
    events_k = result["events_per_s"] * result["seconds"] / 1000
    web, generator = w1 - w0, g1 - g0
    rest = max(0.0, (b1 - b0) - web - generator)
    result["cpu_s_per_1000_events"] = {"web": round(web / events_k, 4), "postgresql_redis": round(rest / events_k, 4),
                                       "total": round((web + rest) / events_k, 4),
                                       "load_generator_excluded": round(generator / events_k, 4)}
    return result


def raw_tables_partitioned(partitioned: bool) -> None:
    """Converts the raw events and track tallies to day partitions, or back to plain tables."""
    from django.db import connection

    from apps.telemetry import partitions

    change = partitions.convert if partitioned else partitions.revert
    with connection.cursor() as c:
        for table, column in partitions.TABLES:
            change(c, table, column)
    if partitioned:
        from apps.telemetry.retention import ensure_partitions

        ensure_partitions()


def bench_ingest_cpu(env, agents, batch_size, seconds, rounds, workers):
    """The ingest benchmark into partitioned tables and, as the baseline in the same run,
    into plain ones, alternating `rounds` times; the median run of each (by events/s)."""
    runs = {True: [], False: []}
    for _ in range(rounds):
        for partitioned in (True, False):
            raw_tables_partitioned(partitioned)
            runs[partitioned].append(ingest_cpu_once(env, agents, batch_size, seconds, workers))
    raw_tables_partitioned(True)
    median = {k: sorted(v, key=lambda r: r["events_per_s"])[len(v) // 2] for k, v in runs.items()}
    return {**median[True], "rounds": rounds, "runs_events_per_s": [r["events_per_s"] for r in runs[True]],
            "plain_tables": {**median[False], "runs_events_per_s": [r["events_per_s"] for r in runs[False]]},
            "partitioned_vs_plain": round(median[True]["events_per_s"] / median[False]["events_per_s"], 3)}


def relation_bytes(cursor, table) -> int:
    """Bytes of a table with its indexes and TOAST, its partitions included."""
    cursor.execute("SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(%s)", [table])
    partitioned = int(cursor.fetchone()[0])
    cursor.execute("SELECT pg_total_relation_size(%s)", [table])
    return partitioned or int(cursor.fetchone()[0])


def populate_day(cursor, site, devices, n, day):
    """n raw events of 4-face boards spread over one UTC day, inserted in SQL."""
    cursor.execute(
        """
        INSERT INTO telemetry_emotionevent (device_id, site_id, zone_id, camera_id, ts, track, label, confidence)
        SELECT d.id, d.site_id, d.zone_id, cam.id, %(day)s::timestamptz + make_interval(secs => g * 86399.0 / %(n)s),
               (g / 600 %% 4)::text, (g * 7 %% 10 / 4)::smallint %% 3, 0.8
        FROM generate_series(1, %(n)s) AS g
        JOIN sites_device d ON d.id = (%(devs)s::uuid[])[1 + g %% %(nd)s]
        JOIN LATERAL (SELECT id FROM sites_camera WHERE device_id = d.id ORDER BY id LIMIT 1) cam ON true
        """, {"day": day, "n": n, "devs": [str(d.id) for d, _ in devices], "nd": len(devices)})


def bench_disk_and_purge(n_events):
    """Bytes per row, and purge by partition drop versus DELETE (same rows, same run)."""
    from django.db import connection
    from django.utils import timezone as dj_timezone

    from apps.telemetry import partitions
    from apps.telemetry.downsample import downsample
    from apps.telemetry.release import release_due
    from apps.telemetry.retention import purge_expired

    site, devices = make_site(50)
    day = (dj_timezone.now() - timedelta(days=60)).replace(hour=0, minute=0, second=0, microsecond=0)
    out = {"events": n_events}
    with connection.cursor() as c:
        partitions.make_partitions(c, day.date(), day.date())
        t = time.perf_counter()
        populate_day(c, site, devices, n_events, day)
        out["insert_s"] = round(time.perf_counter() - t, 1)
        c.execute("ANALYZE telemetry_emotionevent")
        day_partition = partitions.partition_name("telemetry_emotionevent", day.date())  # this day's rows only
        out["bytes_per_raw_event"] = round(relation_bytes(c, day_partition) / n_events, 1)
        # Baseline: the same rows in a plain table with the same indexes.
        c.execute("CREATE TABLE bench_plain_events (LIKE telemetry_emotionevent INCLUDING DEFAULTS)")
        c.execute("INSERT INTO bench_plain_events SELECT * FROM telemetry_emotionevent WHERE ts >= %s AND ts < %s",
                  [day, day + timedelta(days=1)])
        c.execute("ALTER TABLE bench_plain_events ADD PRIMARY KEY (id)")
        c.execute("CREATE INDEX ON bench_plain_events (site_id, ts)")
        c.execute("CREATE INDEX ON bench_plain_events (ts)")
        # One more day of other rows, so the DELETE works on a table bigger than what it removes.
        cols = "device_id, site_id, zone_id, camera_id, track, label, confidence"
        c.execute(f"INSERT INTO bench_plain_events (id, ts, {cols}) SELECT id + 2000000000, ts + interval '2 days', "
                  f"{cols} FROM bench_plain_events LIMIT %s", [n_events // 10])
        c.execute("ANALYZE bench_plain_events")
    cutoff_now = day + timedelta(days=1 + 30)  # EVENT_RETENTION_DAYS after the day's end
    t = time.perf_counter()
    purged = purge_expired(now=cutoff_now)
    out["purge_by_partition_drop_s"] = round(time.perf_counter() - t, 3)
    out["partitions_dropped"] = purged["event_partitions"]
    with connection.cursor() as c:
        t = time.perf_counter()
        c.execute("DELETE FROM bench_plain_events WHERE ts < %s", [day + timedelta(days=1)])
        out["baseline_delete_rows"] = c.rowcount
        out["baseline_delete_s"] = round(time.perf_counter() - t, 3)
        c.execute("DROP TABLE bench_plain_events")
    out["speedup"] = round(out["baseline_delete_s"] / max(out["purge_by_partition_drop_s"], 1e-6), 1)
    # Rollup rows: release an hour of the boards' minutes (with noise, as in production).
    from apps.sites.models import Device
    from apps.telemetry.models import DeviceRelease

    start = dj_timezone.now().replace(second=0, microsecond=0) - timedelta(hours=6)
    for device, _ in devices:
        DeviceRelease.objects.update_or_create(device=device, defaults={"until": start})
    Device.objects.filter(site=site).update(last_seen_at=dj_timezone.now())
    t = time.perf_counter()
    released = release_due()["cells"]
    out["release_cells"], out["release_s"] = released, round(time.perf_counter() - t, 2)
    t = time.perf_counter()  # the release's own downsampling, again (idempotent): its share of the release
    downsample(site, start, dj_timezone.now())
    out["downsample_s"] = round(time.perf_counter() - t, 2)
    with connection.cursor() as c:
        for table in ("telemetry_minuterollup", "telemetry_devicehourrollup"):
            c.execute(f"VACUUM ANALYZE {table}")
            c.execute(f"SELECT count(*) FROM {table}")
            rows = c.fetchone()[0]
            out[f"bytes_per_row_{table.removeprefix('telemetry_')}"] = round(relation_bytes(c, table) / max(rows, 1), 1)
    return out


def populate_year(site, boards):
    """A year of site-minute rollups, each the sum of `boards` cells, then its hour and
    day rows by the production downsampler."""
    from django.db import connection

    from apps.telemetry.downsample import downsample

    end = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    start = end - timedelta(days=365)
    with connection.cursor() as c:
        t = time.perf_counter()
        c.execute("""
            INSERT INTO telemetry_siteminuterollup (site_id, minute, negative, neutral, positive, tracks, cells)
            SELECT %(site)s, m, (random() * 40)::int, (random() * 120)::int, (random() * 60)::int,
                   (random() * 30)::int, %(boards)s
            FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute',
                                 interval '1 minute') AS m""", {"site": site.id, "boards": boards,
                                                               "start": start, "end": end})
        insert_s = time.perf_counter() - t
    t = time.perf_counter()
    downsample(site, start, end, recent_only=False)  # as the migration backfills a year of minutes
    downsample_s = time.perf_counter() - t
    sizes = {}
    with connection.cursor() as c:
        c.execute("ANALYZE")
        for table in ("telemetry_siteminuterollup", "telemetry_sitehourrollup", "telemetry_sitedayrollup"):
            c.execute(f"VACUUM ANALYZE {table}")
            c.execute(f"SELECT count(*) FROM {table}")
            rows = c.fetchone()[0]
            sizes[f"bytes_per_row_{table.removeprefix('telemetry_')}"] = round(relation_bytes(c, table) / max(rows, 1), 1)
    return round(insert_s, 1), round(downsample_s, 1), sizes


def bench_year_trend(env, repeat, boards=50):
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import Max, Sum
    from django.db.models.functions import Trunc
    from django.test import Client

    from apps.accounts.models import Membership, Role
    from apps.telemetry.models import SiteMinuteRollup

    site, _ = make_site(0)
    insert_s, downsample_s, sizes = populate_year(site, boards)
    user = get_user_model().objects.create_user(f"bench-{uuid.uuid4().hex[:6]}")
    Membership.objects.create(user=user, organisation=site.organisation, role=Role.SAFETY_OFFICER, all_sites=True)
    login = Client()
    login.force_login(user)
    out = {"boards": boards, "minute_rows": 365 * 1440, "populate_s": insert_s, "downsample_year_s": downsample_s,
           **sizes}
    with web_server(env, WEB_WORKERS) as url, requests.Session() as s:
        s.cookies.set("sessionid", login.cookies["sessionid"].value)
        for name, query in (("year_day", "hours=8760&bucket=day"), ("days90_hour", "hours=2160&bucket=hour"),
                            ("year_day_with_last_year", "hours=8760&bucket=day&compare=last_year")):
            endpoint = f"{url}/api/v1/sites/{site.id}/trend/?{query}"
            first = s.get(endpoint)
            assert first.status_code == 200, first.text[:300]
            out[name] = {**timed(lambda: s.get(endpoint).content, repeat), "points": len(first.json()["series"]["t"])}

    def from_minutes():
        until = datetime.now(timezone.utc)
        rows = (SiteMinuteRollup.objects.filter(site=site, minute__gte=until - timedelta(days=365), minute__lt=until)
                .annotate(b=Trunc("minute", "day")).values("b")
                .annotate(n=Sum("negative"), u=Sum("neutral"), p=Sum("positive"), tk=Max("tracks"), c=Sum("cells"))
                .order_by("b"))
        list(rows)

    out["baseline_year_day_from_minutes"] = timed(from_minutes, max(3, repeat // 10))
    out["speedup_p50"] = round(out["baseline_year_day_from_minutes"]["p50_ms"] / out["year_day"]["p50_ms"], 1)
    connection.close()
    return out


def write(results):
    OUT.mkdir(exist_ok=True)
    (OUT / "capacity.json").write_text(json.dumps(results, indent=2))
    i, d, y = results["ingest_cpu"], results["disk_purge"], results["year_trend"]
    cpu = i["cpu_s_per_1000_events"]
    lines = [
        "# Capacity benchmarks\n",
        f"Machine: {results['machine']}, at end {results['load_average_at_end']}. Date: {results['date']}. "
        "PostgreSQL 15 with partitioned raw tables, Redis 7, uvicorn with 2 workers; the load generator runs on the "
        "same 2 cores.\n",
        "## Ingest and its CPU\n",
        *([f"(This section measured again on {results['ingest_cpu_date']}.)\n"] if results.get("ingest_cpu_date") else []),
        f"{i['agents']} agents, {i['batch_size']} events per batch, {i['seconds']} s: **{i['events_per_s']:,} events/s**, "
        f"batch latency p50 {i['batch_latency_ms']['p50']} ms, p99 {i['batch_latency_ms']['p99']} ms, {i['errors']} errors "
        f"(baseline COPY {i['baseline_copy_events_per_s']:,} events/s, ratio {i['ratio_to_copy']:.0%}). The median of "
        f"{i['rounds']} runs ({', '.join(f'{r:,}' for r in i['runs_events_per_s'])}); in the same run, alternating with "
        f"them, plain tables: {i['plain_tables']['events_per_s']:,} events/s (median of "
        f"{', '.join(f'{r:,}' for r in i['plain_tables']['runs_events_per_s'])}; CPU per 1,000 events "
        f"{i['plain_tables']['cpu_s_per_1000_events']['total']} CPU-s) — partitioned at "
        f"{i['partitioned_vs_plain']:.0%} of plain.",
        f"CPU per 1,000 events: **{cpu['total']} CPU-s** — web {cpu['web']}, PostgreSQL + Redis {cpu['postgresql_redis']} "
        f"(the load generator's {cpu['load_generator_excluded']} excluded).\n",
        "## Disk\n",
        f"| row | bytes on disk (with indexes) |\n|---|---:|\n| raw event | {d['bytes_per_raw_event']} |\n"
        f"| device minute rollup | {d['bytes_per_row_minuterollup']} |\n"
        f"| device hour rollup | {d['bytes_per_row_devicehourrollup']} |\n"
        f"| site minute rollup (a year of them) | {y['bytes_per_row_siteminuterollup']} |\n"
        f"| site hour rollup | {y['bytes_per_row_sitehourrollup']} |\n"
        f"| site day rollup | {y['bytes_per_row_sitedayrollup']} |\n",
        f"Releasing 6 hours of 50 boards ({d['release_cells']:,} minute cells, noise drawn, rows written) took "
        f"{d['release_s']} s, of which recomputing their hour and day rollups {d['downsample_s']} s; ingest itself writes "
        "no rollup.\n",
        "## Purging one day of raw events\n",
        f"{d['events']:,} events in one UTC day (inserted in {d['insert_s']} s). Dropping its partition: "
        f"**{d['purge_by_partition_drop_s'] * 1000:.0f} ms** ({d['partitions_dropped']} partitions, events and track "
        f"tallies). Baseline in the same run, `DELETE … WHERE ts < cutoff` of the same {d['baseline_delete_rows']:,} "
        f"rows from a plain table with the same indexes: {d['baseline_delete_s']:.1f} s — {d['speedup']}× slower.\n",
        "## Year-long trends\n",
        *([f"(This section measured again on {results['year_trend_date']}.)\n"] if results.get("year_trend_date") else []),
        f"A {y['boards']}-board site with a year of site-minute rollups ({y['minute_rows']:,} rows; downsampled to hours "
        f"and days in {y['downsample_year_s']} s). Over HTTP, {results['repeat']} requests each:\n",
        "| trend | points | p50 ms | p95 ms |\n|---|---:|---:|---:|",
        f"| 1 year, day buckets | {y['year_day']['points']} | {y['year_day']['p50_ms']} | **{y['year_day']['p95_ms']}** |",
        f"| 90 days, hour buckets | {y['days90_hour']['points']} | {y['days90_hour']['p50_ms']} | "
        f"**{y['days90_hour']['p95_ms']}** |",
        f"| 1 year, day buckets, with last year's line | {y['year_day_with_last_year']['points']} | "
        f"{y['year_day_with_last_year']['p50_ms']} | {y['year_day_with_last_year']['p95_ms']} |",
        f"| baseline: 1 year by day from the minute rows (no HTTP) | 365 | "
        f"{y['baseline_year_day_from_minutes']['p50_ms']} | {y['baseline_year_day_from_minutes']['p95_ms']} |\n",
        f"Day rows are {y['speedup_p50']}× faster than summing the minutes (p50).\n",
    ]
    lines += capacity_table(results)
    (OUT / "capacity.md").write_text("\n".join(lines))
    print("\n".join(lines))


#: The capacity table's deployments: boards, each with 4 faces in view sending one event per face a second.
FLEET = (10, 1_000, 10_000)
FACES, MONTH_S = 4, 30 * 86400


def capacity_table(results) -> list[str]:
    """The README's capacity table, extrapolated linearly from the measured per-event CPU,
    per-row bytes and per-cell release cost (markdown lines)."""
    i, d = results["ingest_cpu"], results["disk_purge"]
    cpu = i["cpu_s_per_1000_events"]
    release_per_cell = d["release_s"] / d["release_cells"]
    lines = ["## Capacity, extrapolated from the figures above\n",
             f"Each board: {FACES} faces in view, one event per face a second; raw data kept 30 days, minute rollups "
             "90 days, hours and days forever. CPU is the measured CPU-seconds per event times the event rate "
             "(web, and PostgreSQL + Redis); the worker's is the release's measured cost per board-minute. Disk is "
             "the measured bytes per row times the rows a month writes (track tallies, about one row per face and "
             "minute, are not included).\n",
             "| boards | events/s | raw events on disk (30 days) | device minute + hour rollups per month | web CPU cores | "
             "PostgreSQL + Redis CPU cores | worker CPU cores |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for boards in FLEET:
        rate = boards * FACES
        raw = rate * MONTH_S * d["bytes_per_raw_event"]
        minutes = boards * MONTH_S / 60
        rollups = minutes * d["bytes_per_row_minuterollup"] + minutes / 60 * d["bytes_per_row_devicehourrollup"]
        lines.append(f"| {boards:,} | {rate:,} | {gib(raw)} | {gib(rollups)} | {rate * cpu['web'] / 1000:.2f} | "
                     f"{rate * cpu['postgresql_redis'] / 1000:.2f} | {boards / 60 * release_per_cell:.2f} |")
    lines += ["", f"Measured on this 2-core machine: {i['events_per_s']:,} events/s through the API with everything "
              "(web, PostgreSQL, Redis, the load generator) sharing the two cores. Anything beyond that rate is "
              "extrapolated, not measured.\n"]
    return lines


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2 ** 30:,.1f} GiB" if n_bytes >= 2 ** 30 else f"{n_bytes / 2 ** 20:,.0f} MiB"


def main(argv=None):
    p = ingest_arguments(__doc__)
    p.add_argument("--rounds", type=int, default=3, help="ingest runs into partitioned and into plain tables, alternating")
    p.add_argument("--purge-events", type=int, default=10_000_000, help="raw events in the purged day")
    p.add_argument("--only", choices=["ingest_cpu", "disk_purge", "year_trend"],
                   help="run one section again, keeping the others from bench-results/capacity.json")
    args = p.parse_args(argv)
    env = fresh_database()
    setup_django(env)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results = {"machine": machine(), "date": now, "repeat": args.repeat}
    if args.only:
        previous = json.loads((OUT / "capacity.json").read_text())
        results = {**previous, **results, "date": previous["date"], f"{args.only}_date": now}
        results["machine"] = previous["machine"]
    if args.only in (None, "ingest_cpu"):
        results["ingest_cpu"] = bench_ingest_cpu(env, args.agents, args.batch_size, args.seconds, args.rounds,
                                                 args.web_workers)
    if args.only in (None, "disk_purge"):
        results["disk_purge"] = bench_disk_and_purge(args.purge_events)
    if args.only in (None, "year_trend"):
        results["year_trend"] = bench_year_trend(env, args.repeat)
    results["load_average_at_end"] = round(os.getloadavg()[0], 1)
    write(results)


if __name__ == "__main__":
    main()
