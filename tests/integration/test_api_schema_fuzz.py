"""Property-based requests generated from our own OpenAPI schema (schemathesis) against
a real server, with every check schemathesis has (`--checks all`): no server error; the
status code, content type, headers and body are the ones the schema documents; data the
schema allows is accepted and data it forbids is refused; methods the schema does not
list are refused; an endpoint that needs credentials refuses a call without them. Both
generation modes (positive and negative), as each role: an admin's API token, a board's
device token, and a logged-in admin, safety officer, researcher and field tech."""
import secrets
from datetime import datetime, timezone

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CHECKS as REGISTERED, load_all_checks
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth

from apps.accounts.models import ApiScope, Role

load_all_checks()
CHECKS = list(REGISTERED.get_all())  # every check, as `--checks all`
EXAMPLES = 6  # per operation, identity and generation mode: minutes in all, not tens
# Where a schema cannot say in advance what is refused, and the server's answer is right:
# (method, path, schemathesis' failure) → the answer that excuses it, checked in the answer.


def _future(value) -> bool:
    try:
        return datetime.fromisoformat(str(value)) > datetime.now(timezone.utc)
    except (ValueError, TypeError):
        return False


EXCUSES = {
    # An import's body is a file: the schema says so, but not that it is a valid zip with a
    # manifest, so a generated one is refused with its reasons.
    ("POST", "/api/v1/datasets/{id}/imports/", "RejectedPositiveData"):
        lambda case, response: response.status_code == 400 and bool(response.json()),
    # Ingest refuses bad events one by one and keeps the board's others: a negative case
    # whose bad part is an event is answered 200 with that event in `rejected`.
    ("POST", "/api/v1/ingest/", "AcceptedNegativeData"):
        lambda case, response: response.status_code == 200 and bool(response.json()["rejected"]),
    # A board's `hardware` names are up to 64 characters without NUL: OpenAPI 3.0 has no
    # `propertyNames` to say so (its description does).
    ("POST", "/api/v1/enroll/", "RejectedPositiveData"):
        lambda case, response: (response.status_code == 400
                                and any("entry names" in m for m in response.json().get("hardware", []))),
    # Consent cannot be recorded as given in the future; a schema date-time has no maximum.
    ("POST", "/api/v1/subjects/", "RejectedPositiveData"):
        lambda case, response: (response.status_code == 400 and _future((case.body or {}).get("consent_given_at"))
                                and "consent cannot be given in the future" in response.json().get("consent_given_at", [])),
}


def excused(case, operation, response, failure) -> bool:
    excuse = EXCUSES.get((case.method, operation.path, type(failure).__name__))
    return excuse is not None and excuse(case, response)


pytestmark = pytest.mark.timeout(1500)


def session_headers(user) -> dict:
    """Headers of a browser logged in as `user`, with a CSRF token for unsafe methods."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    csrf = secrets.token_hex(16)
    return {"Cookie": f"sessionid={client.cookies['sessionid'].value}; csrftoken={csrf}", "X-CSRFToken": csrf}


@pytest.fixture
def identities(tenant, make_user):
    from apps.accounts.tokens import create_api_token

    admin = make_user(tenant.org, Role.ADMIN, username="fuzz-admin", password=None)

    class Request:  # create_api_token needs only who asks
        user = admin
        META = {}

    _, secret = create_api_token(Request, "fuzz", list(ApiScope.values))
    people = {role: make_user(tenant.org, role, username=f"fuzz-{role}", password=None)
              for role in (Role.SAFETY_OFFICER, Role.RESEARCHER, Role.FIELD_TECH)}
    return {
        "api token": {"Authorization": f"Bearer {secret}"},
        "admin": session_headers(admin),
        **{str(role): session_headers(user) for role, user in people.items()},
        "device": {"Authorization": f"Device {tenant.token}"},
    }


SESSIONS = {"admin", str(Role.SAFETY_OFFICER), str(Role.RESEARCHER), str(Role.FIELD_TECH)}


def test_every_check_passes_on_every_operation_as_every_role(platform_server, identities):
    raw = requests.get(f"{platform_server.url}/api/v1/schema/?format=json", timeout=30)
    assert raw.status_code == 200
    schema = schemathesis.openapi.from_dict(raw.json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    failures, statuses = {}, []
    for operation in operations:
        device_call = "deviceToken" in str(operation.definition.raw.get("security", ""))
        names = ["device"] if device_call else [n for n in identities if n != "device"]
        for name in names:
            headers = identities[name]
            for mode in GenerationMode:

                @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(generation_mode=mode))
                def check(case):
                    response = case.call(base_url=platform_server.url, headers=headers, timeout=30)
                    statuses.append(response.status_code)
                    # A browser's session cookie is a second security scheme: a request whose
                    # generated Authorization header is wrong is still the logged-in user's.
                    checks = [c for c in CHECKS if not (name in SESSIONS and c is ignored_auth)]
                    try:
                        case.validate_response(response, checks=checks, headers=headers)
                    except BaseExceptionGroup as exc:  # schemathesis' failure group: collected, reported below
                        for failure in exc.exceptions:
                            if excused(case, operation, response, failure):
                                continue
                            key = (case.method, operation.path, type(failure).__name__, getattr(failure, "title", ""))
                            failures.setdefault(key, f"[{name}, {mode}] {case.method} {case.formatted_path} "
                                                     f"{case.query or ''} -> {response.status_code}: "
                                                     f"{str(failure)[:400]}")
                    except AssertionError as exc:  # a single failure
                        if excused(case, operation, response, exc):
                            return
                        key = (case.method, operation.path, type(exc).__name__, "")
                        failures.setdefault(key, f"[{name}, {mode}] {case.method} {case.formatted_path} "
                                                 f"{case.query or ''} -> {response.status_code}: {str(exc)[:400]}")

                check()
    # A URL under /api/ that names nothing answers in JSON too, not with an HTML page.
    nowhere = requests.get(f"{platform_server.url}/api/v1/model-versions/1/artifacts/nothing/", timeout=10,
                           headers=identities["api token"])
    assert nowhere.status_code == 404 and nowhere.json() == {"detail": "Not found."}
    # The run reached the handlers, not only the validation in front of them.
    assert sum(200 <= s < 300 for s in statuses) > 50, sorted(set(statuses))
    assert not failures, f"{len(failures)} distinct failures:\n" + "\n\n".join(failures.values()) + (
        f"\n(server log)\n{platform_server.log_text()[-3000:]}")
