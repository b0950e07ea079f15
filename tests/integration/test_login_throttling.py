"""Password guessing is throttled (django-axes) and every failure is audited."""
import pytest
from django.core.management import call_command
from django.test import Client

from apps.accounts.models import AuditEvent, Role

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-test-password"


def attempt(username, password, ip="203.0.113.7"):
    client = Client(REMOTE_ADDR=ip)
    return client.post("/login/", {"username": username, "password": password})


def test_thirty_wrong_passwords_lock_the_account_and_are_audited(tenant, settings):
    user = tenant.officer.username
    answers = [attempt(user, f"wrong-{i}").status_code for i in range(30)]
    limit = settings.AXES_FAILURE_LIMIT
    assert answers[: limit - 1] == [200] * (limit - 1)  # the form again, with its error
    assert set(answers[limit - 1:]) == {429}
    right = attempt(user, PASSWORD)
    assert right.status_code == 429 and b"axes_reset_username" in right.content
    failed = AuditEvent.objects.filter(action="auth.login_failed", target=user)
    assert failed.count() >= limit and failed.first().organisation == tenant.org
    assert AuditEvent.objects.filter(action="auth.locked_out", target=user).exists()
    assert attempt(user, PASSWORD, ip="198.51.100.9").status_code == 429  # the username, from anywhere

    call_command("axes_reset_username", user)
    assert attempt(user, PASSWORD).status_code == 302  # unlocked by an admin


def test_one_address_guessing_many_usernames_is_locked(tenant, make_user, settings):
    others = [make_user(tenant.org, Role.RESEARCHER, username=f"person-{i}") for i in range(settings.AXES_FAILURE_LIMIT)]
    answers = [attempt(user.username, "wrong").status_code for user in others]
    assert answers == [200] * (len(others) - 1) + [429]  # the address is locked at its fifth failure
    assert attempt(tenant.officer.username, PASSWORD).status_code == 429
    assert attempt(tenant.officer.username, PASSWORD, ip="198.51.100.9").status_code == 302


def test_unknown_usernames_are_audited_without_the_name(tenant):
    attempt("hunter2-typed-in-the-wrong-box", "x")
    event = AuditEvent.objects.get(action="auth.login_failed")
    assert event.target == "(unknown username)" and event.organisation is None and event.ip == "203.0.113.7"
