"""Shared fixtures: tenants and users, and real servers (uvicorn, Celery) started as
subprocesses against the test database."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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


def pytest_runtest_setup(item):
    """`@pytest.mark.dataset("fer2013/fer2013.zip")` / `@pytest.mark.shared_model(
    "yunet/face_detection_yunet.onnx")`: skip with the reason where the file is absent (a
    fresh clone), fail where CI=true (CI has it)."""
    needs = [(dataset_path(m.args[0]), "development data set", "AFFECTWATCH_DATASETS names the data sets folder")
             for m in item.iter_markers("dataset")]
    needs += [(shared_model(m.args[0]), "model file", "AFFECTWATCH_MODELS names the models folder")
              for m in item.iter_markers("shared_model")]
    for path, what, hint in needs:
        if not path.exists():
            reason = f"{what} {path} is absent ({hint})"
            if IN_CI:
                pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
            pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_database_url() -> str:
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
    env["DATABASE_URL"] = test_database_url()
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


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory):
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def _platform_server(django_db_setup, django_db_blocker, server_logs):
    server = PlatformServer(server_logs)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def platform_server(_platform_server, transactional_db):
    """A running ASGI server on the test database. Data made in the test is committed, so
    the server sees it. A test may stop() and start() it; it is running again after."""
    _platform_server.start()
    yield _platform_server
    _platform_server.start()


@pytest.fixture(scope="session")
def _celery_worker(django_db_setup, django_db_blocker, server_logs):
    worker = Process(
        "celery-worker",
        [sys.executable, "-m", "celery", "-A", "affectwatch", "worker", "-Q", "celery,training", "-c", "1",
         "--pool", "prefork", "--loglevel", "info", "-n", f"test-{os.getpid()}@%h"],
        server_env(),
        server_logs,
        ready=None,
    )
    worker.ready = lambda: "ready." in worker.log_text()
    worker.start(timeout=90)
    yield worker
    worker.stop()


@pytest.fixture
def celery_worker(_celery_worker, transactional_db):
    """A real Celery worker process consuming the `celery` and `training` queues."""
    _celery_worker.start(timeout=90)
    yield _celery_worker


# --- tenants and users ----------------------------------------------------------------

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


@pytest.fixture
def make_org(db):
    from apps.accounts.models import Organisation

    def make(slug="acme"):
        return Organisation.objects.create(name=slug.title(), slug=slug)

    return make


@pytest.fixture
def make_site(db):
    from apps.sites.models import Site, Zone

    def make(org, slug="plant", zones=("Line 1",)):
        site = Site.objects.create(organisation=org, name=slug.title(), slug=slug)
        for z in zones:
            Zone.objects.create(site=site, name=z)
        return site

    return make


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    from apps.accounts.models import Membership

    def make(org, role, username=None, sites=(), all_sites=False, password="a-long-test-password"):
        user = get_user_model().objects.create_user(username or f"{role}-{org.slug}", password=password)
        m = Membership.objects.create(user=user, organisation=org, role=role, all_sites=all_sites)
        m.sites.set(sites)
        return user

    return make


@pytest.fixture
def make_device(db):
    from apps.sites.enrollment import create_device_with_token
    from apps.sites.models import Camera

    def make(site, name="board-1", cameras=("cam0",), simulated=False):
        device, token = create_device_with_token(site, name, simulated=simulated, zone=site.zones.first())
        for cam in cameras:
            Camera.objects.create(device=device, name=cam)
        return device, token

    return make


@pytest.fixture
def tenant(make_org, make_site, make_user, make_device):
    """One organisation with a site, a device (token known) and a safety officer."""
    from types import SimpleNamespace

    from apps.accounts.models import Role

    org = make_org("acme")
    site = make_site(org)
    device, token = make_device(site)
    officer = make_user(org, Role.SAFETY_OFFICER, sites=[site])
    return SimpleNamespace(org=org, site=site, device=device, token=token, officer=officer)


@pytest.fixture
def exact_counts(settings):
    """The privacy mechanism at ε = 10⁹: noise scale 10⁻⁷, so every draw is 0 and the
    published numbers equal the bounded raw ones. For tests of arithmetic and plumbing;
    tests of the guarantee (tests/integration/test_privacy_attacks.py) use the default ε."""
    settings.AFFECTWATCH = {**settings.AFFECTWATCH, "DP_EPSILON": 1e9}
