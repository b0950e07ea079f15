"""Ids typed into forms and query strings: whatever they are — another organisation's,
missing, or no id at all — pages answer 4xx (or ignore a filter), never 5xx, and the
answer for another organisation's id is the one for a missing id."""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from apps.accounts.models import Role
from apps.training.models import ModelVersion
from tests.support import page_as

pytestmark = pytest.mark.django_db
NOT_IDS = ["abc", "²", "1\x00", "9" * 5000, "-1", "1.5", "00000000-0000-0000-0000-00000000000g", " "]


@pytest.fixture
def people(tenant, make_user, make_org, make_site, make_device):
    rival_site = make_site(make_org("rival"), "depot")
    rival_device, _ = make_device(rival_site, "rival-board")
    version = ModelVersion.objects.create(organisation=tenant.org, version="acme@1", name="acme", number=1,
                                          labels=["negative", "neutral", "positive"], onnx_file="m/model.onnx",
                                          sha256="0" * 64, size=1)
    return {
        "fieldtech": page_as(make_user(tenant.org, Role.FIELD_TECH, sites=[tenant.site])),
        "officer": page_as(tenant.officer),
        "researcher": page_as(make_user(tenant.org, Role.RESEARCHER, all_sites=True)),
        "rival_site": rival_site, "rival_device": rival_device, "version": version,
    }


def requests_with(value, people, tenant):
    v = people["version"].pk
    return [
        ("fieldtech", "get", "/devices/", {"site": value}),
        ("fieldtech", "post", "/devices/enrollment-codes/", {"site": value}),
        ("fieldtech", "post", "/devices/enrollment-codes/", {"site": tenant.site.pk, "zone": value}),
        ("officer", "get", "/alerts/", {"site": value}),
        ("researcher", "post", f"/research/models/{v}/deploy/", {"site": value}),
        ("researcher", "post", f"/research/models/{v}/deploy/", {"site": tenant.site.pk, "canary": value}),
    ]


@pytest.mark.parametrize("value", NOT_IDS)
def test_values_that_are_no_id_are_never_a_server_error(people, tenant, value):
    for who, method, url, data in requests_with(value, people, tenant):
        res = getattr(people[who], method)(url, data)
        assert res.status_code < 500, (who, url, data, res.status_code)


def test_another_organisations_id_reads_as_a_missing_one(people, tenant):
    for (who, method, url, data), (_, _, _, missing) in zip(
            requests_with(people["rival_site"].pk, people, tenant), requests_with(10**9, people, tenant)):
        theirs = getattr(people[who], method)(url, data)
        nobody = getattr(people[who], method)(url, missing)
        assert theirs.status_code == nobody.status_code, (who, url)
        assert b"depot" not in theirs.content and b"Depot" not in theirs.content


#: Text a browser can send (no lone surrogates: a form cannot encode them): control
#: characters, other scripts, digits with signs and dots, and long runs.
NASTY = st.one_of(st.sampled_from(NOT_IDS), st.text(max_size=40), st.integers(-2**70, 2**70).map(str))
QUERY_PAGES = [("officer", "/"), ("officer", "/alerts/"), ("fieldtech", "/devices/"), ("researcher", "/research/"),
               ("officer", "/settings/audit/")]
QUERY_KEYS = ["site", "page", "state", "label", "worker", "subject", "zone", "hours", "action", "next"]


def test_a_nul_in_a_query_string_is_a_400_on_pages_and_api(people, tenant):
    assert people["officer"].get("/settings/audit/", {"action": "1\x00"}).status_code in (400, 403)
    res = people["officer"].get(f"/api/v1/sites/{tenant.site.pk}/trend/", {"zone": "\x00"})
    assert res.status_code == 400 and "NUL" in res.json()["detail"]


def test_any_query_string_on_any_page_is_never_a_server_error(people, tenant, make_user):
    people["admin"] = page_as(make_user(tenant.org, Role.ADMIN, username="page-admin"))
    pages = QUERY_PAGES + [("officer", f"/sites/{tenant.site.pk}/"), ("admin", "/settings/audit/"),
                           ("admin", "/settings/tokens/"), ("officer", f"/sites/{tenant.site.pk}/alert-rules/")]

    @settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(page=st.sampled_from(pages), key=st.sampled_from(QUERY_KEYS), value=NASTY)
    def check(page, key, value):
        who, url = page
        res = people[who].get(url, {key: value})
        assert res.status_code < 500, (who, url, key, value, res.status_code)

    check()


def test_any_value_in_any_form_field_is_never_a_server_error(people, tenant):
    @settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(value=NASTY, which=st.integers(0, 5))
    def check(value, which):
        who, method, url, data = requests_with(value, people, tenant)[which]
        res = getattr(people[who], method)(url, data)
        assert res.status_code < 500, (who, url, data, res.status_code)

    check()
