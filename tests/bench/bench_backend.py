"""Backend benchmarks against PostgreSQL (`make bench`).

ingest — several simulated agents post batches concurrently to a real uvicorn server
         (as `platform/entrypoint.sh web` runs it: 2 worker processes); sustained
         events/s and p50/p99 batch latency. Bodies are encoded before the clock starts.
         Baseline in the same run: the same events written straight into PostgreSQL with
         COPY (the storage floor, no HTTP, validation or rollups).
agent  — one simulated 4-camera board at 100 events/s through the real outbox and
         publisher against the server's default rate budget for 75 s (a full minute of
         the budget): requests, 429s and delivery. Baseline in the same run: the
         publisher without gathering (`--linger 0`, how it sent before).
trends — a site with N raw events over 30 days (default 10 million) and its rollups;
         p50/p95 latency of the site trend API over HTTP for 30 days at minute
         resolution. Baselines in the same run: the series loaded and encoded in Python,
         and computed from the raw events.

Results: bench-results/backend.json and backend.md.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench-results"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB = "affectwatch_bench"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB}"
WEB_WORKERS = 2  # platform/entrypoint.sh's default


def machine():
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
            f"(this project's dev/CI machine); load average at start {os.getloadavg()[0]:.1f}")


def fresh_database():
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    # DEBUG off, as deployed (DEBUG times and keeps every query).
    env = dict(os.environ, DATABASE_URL=DB_URL, AFFECTWATCH_INGEST_RATE_PER_MINUTE="100000000",
               AFFECTWATCH_INGEST_MAX_EVENTS="5000", DEBUG="0")
    # The production shape: Redis for the rate-limit cache and the channel layer.
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
    env.setdefault("AFFECTWATCH_REDIS_PREFIX", "bench:")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, "manage.py", "createcachetable"], cwd=ROOT, env=env, check=True)
    return env


def setup_django(env):
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "AFFECTWATCH_INGEST_RATE_PER_MINUTE", "REDIS_URL",
                                           "AFFECTWATCH_REDIS_PREFIX")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "affectwatch.settings")
    import django

    django.setup()


def make_site(n_devices, zones=4):
    from apps.accounts.models import Organisation
    from apps.sites.enrollment import create_device_with_token
    from apps.sites.models import Camera, Site, Zone

    org = Organisation.objects.create(name="Bench", slug=f"bench-{uuid.uuid4().hex[:6]}")
    site = Site.objects.create(organisation=org, name="Bench plant", slug="bench")
    zs = [Zone.objects.create(site=site, name=f"Zone {i}") for i in range(zones)]
    devices = []
    for i in range(n_devices):
        device, token = create_device_with_token(site, f"bench-{i}", zone=zs[i % zones])
        Camera.objects.create(device=device, name="cam0")
        Camera.objects.create(device=device, name="cam1")
        devices.append((device, token))
    return site, devices


def batch_events(n, t0):
    labels = ("negative", "neutral", "neutral", "neutral", "positive")
    return [{"ts": (t0 + timedelta(milliseconds=10 * i)).isoformat(), "camera": f"cam{i % 2}",
             "track": str(i % 7), "label": labels[i % 5], "confidence": 0.5 + (i % 50) / 100} for i in range(n)]


@contextmanager
def web_server(env, workers):
    """uvicorn as `platform/entrypoint.sh web` runs it, on a port of its own."""
    port = 18765
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "affectwatch.asgi:application", "--port", str(port), "--workers", str(workers),
         "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                requests.get(f"{url}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(20)


def bench_ingest(env, agents, batch_size, seconds, workers, on_load=None):
    """Each agent posts batches back to back. Bodies are serialized before the clock
    starts (on a real site they are built on the boards, not on this machine); each
    post only gets a fresh batch_id. `on_load("start")` / `on_load("end")` are called
    just before the agents start and just after they stop (bench_capacity's CPU meter)."""
    site, devices = make_site(agents)
    latencies, accepted, errors = [], [0], [0]
    lock = threading.Lock()

    def agent(url, token, template, stop_at):
        s = requests.Session()
        s.headers.update({"Authorization": f"Device {token}", "Content-Type": "application/json"})
        while time.monotonic() < stop_at:
            body = template.replace(b"BATCH-ID", str(uuid.uuid4()).encode())
            t = time.perf_counter()
            r = s.post(f"{url}/api/v1/ingest/", data=body, timeout=60)
            dt = time.perf_counter() - t
            with lock:
                if r.status_code == 200:
                    latencies.append(dt)
                    accepted[0] += r.json()["accepted"]
                else:
                    errors[0] += 1

    start = datetime.now(timezone.utc)
    templates = [json.dumps({"batch_id": "BATCH-ID", "events": batch_events(batch_size, start)}).encode()
                 for _ in devices]
    with web_server(env, workers) as url:
        stop_at = time.monotonic() + seconds
        threads = [threading.Thread(target=agent, args=(url, tok, body, stop_at))
                   for (_, tok), body in zip(devices, templates)]
        if on_load:
            on_load("start")
        t0 = time.perf_counter()
        [t.start() for t in threads]
        [t.join() for t in threads]
        elapsed = time.perf_counter() - t0
        if on_load:
            on_load("end")
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 2 else [float("nan")] * 99
    result = {"agents": agents, "batch_size": batch_size, "seconds": round(elapsed, 1),
              "batches": len(latencies), "errors": errors[0], "events_per_s": round(accepted[0] / elapsed),
              "batch_latency_ms": {"p50": round(1000 * statistics.median(latencies), 1), "p99": round(1000 * q[98], 1)}}
    # Baseline: COPY the same number of events straight into the events table.
    result["baseline_copy_events_per_s"] = copy_baseline(site, devices, accepted[0] or 10000)
    result["ratio_to_copy"] = round(result["events_per_s"] / result["baseline_copy_events_per_s"], 3)
    return result


def bench_agent(env, seconds=75.0, rate=100.0):
    """`edge_agent simulate` (real outbox and publisher) at the default rate budget."""
    from apps.sites.enrollment import create_device_with_token

    site, _ = make_site(0)
    out = {}
    server_env = {k: v for k, v in env.items() if k != "AFFECTWATCH_INGEST_RATE_PER_MINUTE"}
    with web_server(server_env, WEB_WORKERS) as url:
        for name, linger in (("gathered (linger 1 s, default)", 1.0), ("baseline: no gathering", 0.0)):
            _, token = create_device_with_token(site, f"agent-{linger}")
            res = subprocess.run([sys.executable, "-m", "edge_agent", "simulate", "--server", url, "--token", token,
                                  "--rate", str(rate), "--duration", str(seconds), "--cameras", "4", "--seed", "1",
                                  "--linger", str(linger)], capture_output=True, text=True, cwd=ROOT,
                                 timeout=seconds + 240)
            summary = json.loads(res.stdout.strip().splitlines()[-1])
            out[name] = {k: summary[k] for k in ("generated", "accepted", "batches", "throttled", "left_in_outbox")}
            out[name]["requests_per_s"] = round(summary["batches"] / seconds, 2)
    return {"rate": rate, "cameras": 4, "seconds": seconds, "runs": out}


def copy_baseline(site, devices, n):
    from apps.sites.models import Camera

    device = devices[0][0]
    cam = Camera.objects.filter(device=device).first()
    now = datetime.now(timezone.utc)
    with psycopg.connect(DB_URL.replace("postgres://", "postgresql://")) as conn:
        t = time.perf_counter()
        with conn.cursor().copy(
            "COPY telemetry_emotionevent (device_id, site_id, zone_id, camera_id, ts, track, label, confidence) FROM STDIN"
        ) as copy:
            for i in range(n):
                copy.write_row((device.id, site.id, device.zone_id, cam.id, now, str(i % 7), i % 3, 0.5))
        conn.commit()
        return round(n / (time.perf_counter() - t))


def populate_history(site, devices, n_events, days=30):
    """n_events raw events spread over `days`, then the rollups built from them in SQL
    (without noise: the read path costs the same whatever the numbers are)."""
    from django.db import connection

    from apps.telemetry import partitions

    dev_ids = [str(d.id) for d, _ in devices]
    span = days * 86400
    with connection.cursor() as c:
        today = datetime.now(timezone.utc).date()
        partitions.make_partitions(c, today - timedelta(days=days + 1), today)
        t = time.perf_counter()
        c.execute(
            """
            INSERT INTO telemetry_emotionevent (device_id, site_id, zone_id, camera_id, ts, track, label, confidence)
            SELECT d.id, d.site_id, d.zone_id, cam.id,
                   now() - make_interval(secs => (g * %(span)s::float8 / %(n)s)),
                   (g %% 11)::text, (g * 7 %% 10 / 4)::smallint %% 3, 0.8
            FROM generate_series(1, %(n)s) AS g
            JOIN sites_device d ON d.id = (%(devs)s::uuid[])[1 + g %% %(nd)s]
            JOIN LATERAL (SELECT id FROM sites_camera WHERE device_id = d.id ORDER BY id LIMIT 1) cam ON true
            """,
            {"span": span, "n": n_events, "devs": dev_ids, "nd": len(dev_ids)},
        )
        insert_s = time.perf_counter() - t
        for table, keys, extra in (
            ("telemetry_minuterollup", "device_id, site_id, zone_id", ""),
            ("telemetry_zoneminuterollup", "zone_id, site_id", ""),
            ("telemetry_siteminuterollup", "site_id", ""),
        ):
            c.execute(f"""
                INSERT INTO {table} ({keys}, minute, negative, neutral, positive, tracks, cells)
                SELECT {keys}, date_trunc('minute', ts), count(*) FILTER (WHERE label = 0),
                       count(*) FILTER (WHERE label = 1), count(*) FILTER (WHERE label = 2),
                       count(DISTINCT (device_id, camera_id, track)), count(DISTINCT device_id)
                FROM telemetry_emotionevent WHERE site_id = %s GROUP BY {keys}, date_trunc('minute', ts)
            """, [site.id])
        c.execute("ANALYZE")
    return round(insert_s, 1)


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    q = statistics.quantiles(times, n=20)
    return {"p50_ms": round(1000 * statistics.median(times), 1), "p95_ms": round(1000 * q[18], 1)}


def bench_trends(env, n_events, repeat, workers):
    """Through the real server, as a dashboard or API client asks. Baselines in the same
    run: the series computed in Python from the rollups and encoded there (how this API
    answered before the database built the JSON), and computed from the raw events."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone as dj_timezone

    from apps.accounts.models import Membership, Role
    from apps.telemetry.trends import trend

    site, devices = make_site(8)
    insert_s = populate_history(site, devices, n_events)
    user = get_user_model().objects.create_user(f"bench-{uuid.uuid4().hex[:6]}")
    Membership.objects.create(user=user, organisation=site.organisation, role=Role.SAFETY_OFFICER, all_sites=True)
    login = Client()
    login.force_login(user)
    with web_server(env, workers) as url, requests.Session() as s:
        s.cookies.set("sessionid", login.cookies["sessionid"].value)
        endpoint = f"{url}/api/v1/sites/{site.id}/trend/?hours=720&bucket=minute"
        first = s.get(endpoint)
        assert first.status_code == 200, first.text[:300]
        points = len(first.json()["series"]["t"])
        api = timed(lambda: s.get(endpoint).content, repeat)

    def python_columns():
        until = dj_timezone.now()
        json.dumps(trend(site, until - timedelta(days=30), until))

    def raw():
        with connection.cursor() as c:
            c.execute("""SELECT date_trunc('minute', ts) m, count(*) FILTER (WHERE label=0), count(*) FILTER (WHERE label=1),
                         count(*) FILTER (WHERE label=2), count(DISTINCT (device_id, camera_id, track))
                         FROM telemetry_emotionevent WHERE site_id=%s AND ts >= now() - interval '30 days'
                         GROUP BY m ORDER BY m""", [site.id])
            c.fetchall()

    in_python = timed(python_columns, repeat)
    baseline = timed(raw, max(3, repeat // 10))
    return {"raw_events": n_events, "populate_s": insert_s, "points": points, "api": api,
            "baseline_python_columns": in_python, "baseline_raw_scan": baseline,
            "speedup_p50": round(baseline["p50_ms"] / api["p50_ms"], 1)}


def _when(section) -> str:
    return f" (measured {section['date']})" if section.get("date") else ""


def write(results):
    OUT.mkdir(exist_ok=True)
    (OUT / "backend.json").write_text(json.dumps(results, indent=2))
    lines = ["# Backend benchmarks\n", f"Machine: {results['machine']}, at end {results['load_average_at_end']} "
             f"(other work shares the CPU when above ~0.5). Date: {results['date']}. PostgreSQL 15, Redis 7, "
             f"uvicorn with {results['web_workers']} workers; the load generator runs on the same 2 cores.\n"]
    if "ingest" in results:
        i = results["ingest"]
        lines += [
            "## Ingest\n",
            f"{i['agents']} concurrent agents, {i['batch_size']} events per batch, {i['seconds']} s{_when(i)}: "
            f"**{i['events_per_s']:,} events/s**, batch latency p50 {i['batch_latency_ms']['p50']} ms, "
            f"p99 {i['batch_latency_ms']['p99']} ms, {i['errors']} errors.",
            f"Baseline (COPY straight into PostgreSQL, same run): {i['baseline_copy_events_per_s']:,} events/s; "
            f"the API reaches {i['ratio_to_copy']:.0%} of it.\n",
        ]
    if "agent" in results:
        a = results["agent"]
        lines += ["## One busy board against the rate budget\n",
                  f"`edge_agent simulate`: {a['cameras']} cameras, {a['rate']:g} events/s, {a['seconds']:g} s, the "
                  f"server's default budget (600 a minute, a batch costing 1 + events / 100){_when(a)}.\n",
                  "| publisher | requests/s | 429 answers | generated | accepted | left in outbox |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | {r['requests_per_s']} | {r['throttled']} | {r['generated']} | {r['accepted']} "
                  f"| {r['left_in_outbox']} |" for name, r in a["runs"].items()]
        lines.append("")
    if "trends" in results:
        t = results["trends"]
        lines += [
            "## Site trend, 30 days at minute resolution\n",
            f"{t['raw_events']:,} raw events{_when(t)}; {t['points']:,} points returned. API p50 {t['api']['p50_ms']} ms, "
            f"**p95 {t['api']['p95_ms']} ms** over HTTP (JSON built by PostgreSQL). Baselines in the same run: the "
            f"same series loaded into Python and encoded there, p50 {t['baseline_python_columns']['p50_ms']} ms, "
            f"p95 {t['baseline_python_columns']['p95_ms']} ms (without HTTP); from raw events, "
            f"p50 {t['baseline_raw_scan']['p50_ms']} ms — rollups are {t['speedup_p50']}× faster.\n",
        ]
    (OUT / "backend.md").write_text("\n".join(lines))
    print("\n".join(lines))


def ingest_arguments(doc):
    """The argument parser of a benchmark that runs `bench_ingest` (its load options)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--repeat", type=int, default=50, help="requests per trend measured")
    p.add_argument("--web-workers", type=int, default=WEB_WORKERS, help="uvicorn workers (default: as deployed)")
    return p


def main(argv=None):
    p = ingest_arguments(__doc__)
    p.add_argument("--events", type=int, default=10_000_000, help="raw events for the trends benchmark")
    p.add_argument("--only", choices=["ingest", "agent", "trends"])
    args = p.parse_args(argv)
    env = fresh_database()
    setup_django(env)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results = {"machine": machine(), "date": now, "web_workers": args.web_workers}
    if args.only and (OUT / "backend.json").exists():  # one section again: keep the others, with their dates
        previous = json.loads((OUT / "backend.json").read_text())
        results = {**{k: v for k, v in previous.items() if isinstance(v, dict)}, **results}
        for key in ("ingest", "agent", "trends"):
            if key in results and key != args.only:
                results[key].setdefault("date", previous.get("date"))
    if args.only in (None, "ingest"):
        results["ingest"] = {**bench_ingest(env, args.agents, args.batch_size, args.seconds, args.web_workers),
                             "date": now}
    if args.only in (None, "agent"):
        results["agent"] = {**bench_agent(env), "date": now}
    if args.only in (None, "trends"):
        results["trends"] = {**bench_trends(env, args.events, args.repeat, args.web_workers), "date": now}
    results["load_average_at_end"] = round(os.getloadavg()[0], 1)
    write(results)


if __name__ == "__main__":
    main()
