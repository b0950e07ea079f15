"""`make run`: migrate, seed the demo, then run the web server, a Celery worker, Celery
beat, a simulated agent per demo device and one real edge agent (affectwatch/demo_board.py),
until Ctrl-C stops them all."""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def wait_healthy(url: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as res:
                return json.load(res)
        except Exception as exc:  # still starting: refused connection, 503, ...
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not become healthy within {timeout:.0f} s: {exc}") from exc
            time.sleep(0.5)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--rate", type=float, default=6.0,
                        help="simulated events per second per device (6 people, one event a second each)")
    parser.add_argument("--no-simulator", action="store_true")
    parser.add_argument("--no-real-board", action="store_true",
                        help="do not run the demo's real edge agent (detector + model on a generated scene)")
    args = parser.parse_args(argv)

    if port_in_use(args.host, args.port):
        print(
            f"error: port {args.port} on {args.host} is already in use — is Affectwatch already running?\n"
            f"Stop the other program, or start on another port: make run PORT=8001",
            file=sys.stderr,
        )
        return 1

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "affectwatch.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("seed_demo")

    # Each start counts afresh: the processes' Prometheus files of an earlier run go.
    shutil.rmtree(settings.METRICS_DIR, ignore_errors=True)
    settings.METRICS_DIR.mkdir(parents=True)
    py = sys.executable
    base = f"http://{args.host}:{args.port}"
    procs: list[tuple[str, subprocess.Popen]] = []

    def start(name, cmd):
        procs.append((name, subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)))

    start("web", [py, "-m", "uvicorn", "affectwatch.asgi:application", "--host", args.host, "--port", str(args.port),
                  "--log-level", "warning"])
    start("worker", [py, "-m", "celery", "-A", "affectwatch", "worker", "-Q", "celery,training", "-c", "1",
                     "--loglevel", "warning"])
    start("beat", [py, "-m", "celery", "-A", "affectwatch", "beat", "--loglevel", "warning"])

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        health = wait_healthy(f"{base}/healthz")
        if not args.no_simulator:
            devices = json.loads((settings.VAR_DIR / "demo-devices.json").read_text())
            for d in devices:
                start(f"simulator:{d['name']}", [py, "-m", "edge_agent", "simulate", "--server", base, "--token",
                                                 d["token"], "--rate", str(args.rate), "--cameras", "2"])
        if not args.no_real_board:
            from affectwatch import demo_board

            start(f"board:{demo_board.NAME}", demo_board.prepare(settings.VAR_DIR, base, py, ROOT))
        checks = ", ".join(f"{k} {v['status']}" for k, v in health["checks"].items())
        print(f"\nAffectwatch is running at {base}/  (health: {checks})")
        print(f"Log in with a demo user from {settings.VAR_DIR / 'demo-credentials.txt'}. API docs: {base}/api/v1/docs/")
        print("Press Ctrl-C to stop.\n", flush=True)
        while not stopping:
            for name, p in procs:
                if p.poll() is not None:
                    print(f"error: {name} exited with code {p.returncode}; stopping everything.", file=sys.stderr)
                    stopping = True
                    break
            time.sleep(0.5)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        print("Stopping…", flush=True)
        for _, p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
