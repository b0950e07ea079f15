import subprocess
import sys

import pytest
import yaml

from tests.support import ROOT, PlatformServer, clean_env, free_port


@pytest.mark.django_db
def test_healthz_reports_every_part(client):
    res = client.get("/healthz")
    body = res.json()
    assert res.status_code == 200, body
    assert set(body["checks"]) == {"database", "broker", "channel_layer"}
    assert all(c["status"] == "ok" for c in body["checks"].values())


def test_healthz_is_503_when_the_broker_is_down(django_db_setup, server_logs, transactional_db):
    # A broker URL nothing listens on: the web server still starts and says what is down.
    server = PlatformServer(server_logs, CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    server.start()
    try:
        status, body = server.health()
        assert status == 503
        assert body["checks"]["broker"]["status"] == "error"
        assert body["checks"]["database"]["status"] == "ok"
    finally:
        server.stop()


def test_production_settings_pass_check_deploy():
    env = clean_env(AFFECTWATCH_ENV="production", SECRET_KEY="x" * 20 + "-Kq8#vL2@pW9!zR4$tY7^uI1&oP5*aS3",
               ALLOWED_HOSTS="affectwatch.example.com", AFFECTWATCH_METRICS_TOKEN="m" * 40)
    res = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    del env["AFFECTWATCH_METRICS_TOKEN"]  # Prometheus could not scrape /metrics
    res = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "affectwatch.monitoring.W001" in res.stdout + res.stderr
    env["AFFECTWATCH_METRICS_TOKEN"] = "short"
    res = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "AFFECTWATCH_METRICS_TOKEN must be at least 32 characters" in res.stderr


def test_production_refuses_to_start_without_secret_key():
    env = {k: v for k, v in clean_env().items() if k != "SECRET_KEY"}
    env["AFFECTWATCH_ENV"] = "production"
    res = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert res.returncode != 0
    assert "SECRET_KEY must be set" in res.stderr


def test_make_run_on_a_taken_port_says_so_clearly():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "affectwatch.launcher", "--port", str(port)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert f"port {port}" in res.stderr and "already in use" in res.stderr
    assert "Traceback" not in res.stderr


def test_docker_compose_file_resolves():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(services)
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no health check"
        assert "image" in svc or "build" in svc, name
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        build = svc.get("build")
        if build:
            context = ROOT / build["context"]
            assert (context / build["dockerfile"]).is_file(), f"{name}: missing {build['dockerfile']}"
    for name in ("web", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith("redis://")
        assert services[name]["command"]
    assert not (ROOT / "platform" / "__init__.py").exists()


@pytest.mark.django_db
def test_the_demo_admin_is_an_organisation_admin_not_a_django_superuser(settings, tmp_path):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from apps.accounts.models import Role

    settings.VAR_DIR = tmp_path
    call_command("seed_demo")
    User = get_user_model()
    admin = User.objects.get(username="admin")
    assert admin.membership.role == Role.ADMIN
    assert not User.objects.filter(is_superuser=True).exists() and not User.objects.filter(is_staff=True).exists()
    c = Client()
    c.force_login(admin)
    assert c.get("/admin/auth/user/").status_code == 302  # to the admin's login: not for organisations
    call_command("seed_demo", operator="ops")
    ops = User.objects.get(username="ops")
    assert ops.is_superuser and not hasattr(ops, "membership")
    creds = (tmp_path / "demo-credentials.txt").read_text()
    assert "admin" in creds and "ops" in creds  # the first lines are kept
