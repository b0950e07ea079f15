"""What the schema fuzz test found in the list parameters: `limit` / `offset` that the
schema forbids are refused with a sentence, not quietly replaced; a date-time with an
offset PostgreSQL does not take is answered, not a server error."""
import pytest

from apps.accounts.models import Role
from tests.support import api_as

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(tenant, make_user):
    return api_as(make_user(tenant.org, Role.ADMIN))


@pytest.mark.parametrize("query", ["limit=abc", "limit=0", "limit=-3", "offset=-1", "offset=true",
                                   "limit=1&limit=2", "offset=99999999999"])
def test_a_limit_or_offset_the_schema_forbids_is_a_400_naming_it(admin, query):
    res = admin.get(f"/api/v1/alerts/?{query}")
    assert res.status_code == 400
    name = query.split("=")[0]
    assert res.json()[name] == [f"{name} must be given once, as a whole number from "
                                f"{1 if name == 'limit' else 0} to 2147483647."]


def test_a_valid_limit_and_offset_page_as_before(admin):
    res = admin.get("/api/v1/alerts/?limit=1&offset=0")
    assert res.status_code == 200 and set(res.json()) >= {"count", "results"}


def test_the_schema_declares_their_ranges(admin):
    schema = admin.get("/api/v1/schema/?format=json").json()
    params = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/alerts/"]["get"]["parameters"]}
    assert params["limit"]["minimum"] == 1 and params["offset"]["minimum"] == 0


def test_date_times_with_any_iso_offset_are_answered(admin):
    res = admin.get("/api/v1/alerts/", {"opened_before": "0248-09-06T21:17:37-17:44"})
    assert res.status_code == 200
    res = admin.get("/api/v1/alerts/", {"opened_after": "0001-01-01T00:00:00+10:00"})
    assert res.status_code == 400 and res.json()["opened_after"] == [
        "This date and time is outside the supported range."]


def test_filters_are_predicates_with_strict_values(admin, tenant, make_device):
    """An id naming nothing matches nothing; a malformed id or boolean is a 400; an empty
    value is no filter (the browsable API's form sends every field), as the schema says."""
    make_device(tenant.site, "board-2", simulated=True)
    everything = admin.get("/api/v1/devices/").json()["count"]
    assert everything == 2
    assert admin.get("/api/v1/devices/", {"site": 999999}).json() == {"count": 0, "next": None, "previous": None,
                                                                      "results": []}
    assert admin.get("/api/v1/devices/", {"site": "", "simulated": ""}).json()["count"] == everything
    assert admin.get("/api/v1/devices/", {"simulated": "true"}).json()["count"] == 1
    assert admin.get("/api/v1/devices/", {"simulated": "0"}).json()["count"] == 1
    for bad in ({"site": "abc"}, {"simulated": "274877906943"}, {"simulated": "maybe"}):
        res = admin.get("/api/v1/devices/", bad)
        assert res.status_code == 400 and list(res.json()) == list(bad), res.content
    schema = admin.get("/api/v1/schema/?format=json").json()
    params = {p["name"]: p for p in schema["paths"]["/api/v1/devices/"]["get"]["parameters"]}
    assert params["site"]["allowEmptyValue"] and "allowEmptyValue" not in params["limit"]


def test_a_body_naming_nothing_is_404_and_a_taken_name_409(admin, tenant):
    from apps.datasets.models import Dataset

    res = admin.post("/api/v1/alert-rules/", {"name": "r", "site": 999999, "threshold_pct": 50}, format="json")
    assert res.status_code == 404 and list(res.json()) == ["site"], res.content
    res = admin.post("/api/v1/alert-rules/", {"name": "", "site": 999999, "threshold_pct": 50}, format="json")
    assert res.status_code == 400 and set(res.json()) == {"name", "site"}  # two kinds of wrong: a 400
    Dataset.objects.create(organisation=tenant.org, name="taken")
    res = admin.post("/api/v1/datasets/", {"name": "taken"}, format="json")
    assert res.status_code == 409 and res.json() == {"name": ["a data set with this name already exists"]}


def test_the_schema_is_valid_openapi(tmp_path):
    """Generated clients need a schema that validates (a 3.1-only keyword once broke it)."""
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi: 3.0")
