"""`make test`: point the suite at real PostgreSQL and Redis when they answer (always in
CI), at the embedded default otherwise, then run pytest."""
import os
import shutil
import socket
import sys
import tempfile

import pytest

PG = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)


def reachable(addr) -> bool:
    try:
        socket.create_connection(addr, timeout=1).close()
        return True
    except OSError:
        return False


def main(argv):
    env = os.environ
    in_ci = env.get("CI", "").lower() == "true"
    if "DATABASE_URL" not in env and reachable(PG):
        env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/affectwatch"
    if "REDIS_URL" not in env and reachable(REDIS):
        env["REDIS_URL"] = "redis://127.0.0.1:6379/15"  # a database of its own, away from `make run`
    if in_ci and not (env.get("DATABASE_URL", "").startswith("postgres") and env.get("REDIS_URL")):
        print("CI needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379; start them first", file=sys.stderr)
        return 2
    # Several runs at once on one machine (developers, CI) get their own database, Redis
    # keys and broker file.
    run = f"test{os.getpid()}"
    env.setdefault("AFFECTWATCH_TEST_DB", f"test_affectwatch_{os.getpid()}")
    env.setdefault("AFFECTWATCH_REDIS_PREFIX", f"{run}:")
    env.setdefault("AFFECTWATCH_BROKER_FILE", f"{run}-celery-broker.sqlite3")
    # Nothing under the checkout's var/ (a running demo's) is read or written: media,
    # secret key, SQLite files, broker file and beat schedule live here for this run.
    own_var = "AFFECTWATCH_VAR_DIR" not in env
    var = env.setdefault("AFFECTWATCH_VAR_DIR", tempfile.mkdtemp(prefix="affectwatch-test-var-"))
    print(f"database: {env.get('DATABASE_URL', 'embedded SQLite')}; broker/channels: {env.get('REDIS_URL', 'embedded')}; "
          f"var: {var}", flush=True)
    try:
        return pytest.main(argv)
    finally:
        if own_var:
            shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
