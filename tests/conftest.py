"""Shared fixtures: tenants and users, and real servers (uvicorn, Celery) started as
subprocesses against the test database. The helpers they use are in tests/support.py."""
import os
import sys

import pytest

from tests.support import IN_CI, PlatformServer, Process, dataset_path, server_env, shared_model


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


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Every test starts with empty rate-limit counters. DRF's throttles count requests per
    client address in the cache; every test's client is 127.0.0.1 and a run's tests share
    one Redis prefix, so a test that enrolled a score of boards left the next test's
    enrollments a 429 when both fell in one minute (CI, 2026-12-01). Only the Redis cache
    is cleared (django-redis's delete_pattern, under this run's key prefix)."""
    from django.core.cache import cache

    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("throttle_*")
    yield


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
