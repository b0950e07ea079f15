"""Property-based requests generated from our own OpenAPI schema (schemathesis) against
a real server: whatever a client sends, the API answers without a server error, with a
status code the schema documents, the content type it declares, and a body that matches
its schema."""
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from apps.accounts.models import ApiScope, Role

from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def credentials(tenant, make_user):
    from apps.accounts.tokens import create_api_token

    class Request:  # create_api_token needs only who asks
        user = make_user(tenant.org, Role.ADMIN, username="fuzz-admin", password=None)
        META = {}

    _, secret = create_api_token(Request, "fuzz", list(ApiScope.values))
    return {"Authorization": f"Bearer {secret}"}, {"Authorization": f"Device {tenant.token}"}


def test_no_operation_answers_with_a_server_error(platform_server, credentials):
    api_headers, device_headers = credentials
    raw = requests.get(f"{platform_server.url}/api/v1/schema/?format=json", timeout=30)
    assert raw.status_code == 200
    schema = schemathesis.openapi.from_dict(raw.json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    failures, statuses = [], []
    for operation in operations:
        device_call = "deviceToken" in str(operation.definition.raw.get("security", ""))
        headers = device_headers if device_call else api_headers

        @settings(max_examples=12, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(base_url=platform_server.url, headers=headers, timeout=30)
            statuses.append(response.status_code)
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except BaseExceptionGroup as exc:  # schemathesis' failure group: collected, reported below
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {str(exc)[:300]}")

        check()
    # A URL under /api/ that names nothing answers in JSON too, not with an HTML page.
    nowhere = requests.get(f"{platform_server.url}/api/v1/model-versions/1/artifacts/nothing/", timeout=10,
                           headers=api_headers)
    assert nowhere.status_code == 404 and nowhere.json() == {"detail": "Not found."}
    # The run reached the handlers, not only the validation in front of them.
    assert sum(200 <= s < 300 for s in statuses) > 50, sorted(set(statuses))
    assert not failures, "\n".join(failures[:20]) + f"\n(server log)\n{platform_server.log_text()[-3000:]}"
