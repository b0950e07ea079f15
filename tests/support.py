"""Helpers the tests share: where the development data and model files are, free ports,
the environment and lifecycle of real server processes (uvicorn, Celery) on the test
database, and clients acting as a user. Fixtures live in conftest.py; these are plain
functions and classes a test imports."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The development data sets (FER2013, ...): one setting, default `../shared/datasets`.
DATASETS = Path(os.environ.get("AFFECTWATCH_DATASETS", ROOT.parent / "shared" / "datasets"))
# Third-party model files for development (YuNet, the peer model): default `../shared/models`.
SHARED_MODELS = Path(os.environ.get("AFFECTWATCH_MODELS", ROOT.parent / "shared" / "models"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def dataset_path(relative: str) -> Path:
    """A development data set's path under AFFECTWATCH_DATASETS."""
    return DATASETS / relative


def shared_model(relative: str) -> Path:
    """A third-party model file's path under AFFECTWATCH_MODELS (never committed)."""
    return SHARED_MODELS / relative


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The URL of the database pytest-django made, for servers in other processes."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def clean_env(**extra) -> dict:
    """This process's environment for a child process, less what only the browser
    tests' own process may set (see tests/e2e/conftest.py)."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(extra)
    return env


def server_env(**extra) -> dict:
    env = clean_env()
    env["DATABASE_URL"] = database_url()
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Process:
    """A real server process (uvicorn, celery) that a test can stop and start again."""

    def __init__(self, name, cmd, env, log_dir, ready=None):
        self.name, self.cmd, self.env, self.ready = name, cmd, env, ready
        self.log_path = Path(log_dir) / f"{name}.log"
        self.proc = None

    def start(self, timeout=60):
        if self.running:
            return self
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        if self.ready:
            deadline = time.monotonic() + timeout
            while not self.ready():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start; log:\n{self.log_text()[-4000:]}")
                time.sleep(0.2)
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, kill=False):
        if self.running:
            self.proc.kill() if kill else self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class PlatformServer(Process):
    """uvicorn serving affectwatch.asgi on a free port, on the test database."""

    def __init__(self, log_dir, port=None, **env):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "uvicorn", "affectwatch.asgi:application", "--host", "127.0.0.1",
               "--port", str(self.port), "--log-level", "warning"]
        super().__init__(f"uvicorn-{self.port}", cmd, server_env(**env), log_dir, ready=self._listening)

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def health(self):
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as res:
                return res.status, json.load(res)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)


def api_as(user):
    """A REST client acting as `user`."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


def page_as(user):
    """A browser-less page client logged in as `user`."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def login(page, server, username, password="a-long-test-password"):
    """Log a Playwright `page` in on `server` through the login form, as a person would."""
    page.goto(f"{server.url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
