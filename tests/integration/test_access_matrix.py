"""Every endpoint and page of accounts, sites, telemetry and dashboards: another
tenant's user gets 404 (or sees nothing), a wrong role gets 403, the right role gets in."""
import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken, Role
from apps.accounts.secrets import new_secret
from tests.support import api_as, page_as

pytestmark = pytest.mark.django_db

# (method, path template, allowed role, a wrong role) — {site}, {device}, {token} are ours.
API = [
    ("get", "/api/v1/sites/{site}/", Role.SAFETY_OFFICER, None),
    ("post", "/api/v1/sites/{site}/enrollment-codes/", Role.FIELD_TECH, Role.SAFETY_OFFICER),
    ("get", "/api/v1/devices/{device}/", Role.FIELD_TECH, None),
    ("patch", "/api/v1/devices/{device}/", Role.FIELD_TECH, Role.SAFETY_OFFICER),
    ("post", "/api/v1/devices/{device}/revoke/", Role.FIELD_TECH, Role.SAFETY_OFFICER),
    ("post", "/api/v1/devices/{device}/rotate-token/", Role.FIELD_TECH, Role.RESEARCHER),
    ("get", "/api/v1/sites/{site}/trend/", Role.SAFETY_OFFICER, Role.FIELD_TECH),
    ("get", "/api/v1/sites/{site}/zones/", Role.SAFETY_OFFICER, Role.FIELD_TECH),
    ("get", "/api/v1/sites/{site}/heatmap/", Role.RESEARCHER, Role.FIELD_TECH),
    ("post", "/api/v1/api-tokens/{token}/revoke/", Role.ADMIN, Role.SAFETY_OFFICER),
]
API_LISTS = [
    ("/api/v1/sites/", Role.SAFETY_OFFICER, None),
    ("/api/v1/zones/", Role.FIELD_TECH, None),
    ("/api/v1/devices/", Role.FIELD_TECH, None),
    ("/api/v1/enrollment-codes/", Role.FIELD_TECH, Role.SAFETY_OFFICER),
    ("/api/v1/rollups/", Role.SAFETY_OFFICER, Role.FIELD_TECH),
    ("/api/v1/api-tokens/", Role.ADMIN, Role.SAFETY_OFFICER),
    ("/api/v1/audit-events/", Role.ADMIN, Role.RESEARCHER),
]
PAGES = [
    ("get", "/sites/{site}/", Role.SAFETY_OFFICER, Role.FIELD_TECH),
    ("post", "/devices/{device}/revoke/", Role.FIELD_TECH, Role.SAFETY_OFFICER),
]
PAGES_UNSCOPED = [
    ("get", "/devices/", Role.FIELD_TECH, Role.SAFETY_OFFICER),
    ("get", "/settings/tokens/", Role.ADMIN, Role.SAFETY_OFFICER),
    ("get", "/settings/audit/", Role.ADMIN, Role.FIELD_TECH),
    ("get", "/", Role.SAFETY_OFFICER, None),
]


@pytest.fixture
def world(tenant, make_org, make_site, make_user, make_device):
    """Our tenant's objects, and users of every role in ours and in a rival tenant."""
    secret, key_hash = new_secret("aw")
    token = ApiToken.objects.create(organisation=tenant.org, name="bi", prefix=secret[:10], key_hash=key_hash,
                                    scopes=["telemetry:read"])
    ours = {role: make_user(tenant.org, role, username=f"ours-{role}", sites=[tenant.site], password=None) for role in Role.values
            if role != Role.API_CONSUMER}
    rival = make_org("rival")
    rival_site = make_site(rival, "rival-plant")
    theirs = {role: make_user(rival, role, username=f"theirs-{role}", all_sites=True, password=None) for role in Role.values
              if role != Role.API_CONSUMER}
    ids = {"site": tenant.site.id, "device": tenant.device.id, "token": token.id}
    return tenant, ours, theirs, ids, rival_site


@pytest.mark.parametrize("method, path, allowed, wrong", API)
def test_api_object_endpoints(world, method, path, allowed, wrong):
    tenant, ours, theirs, ids, _ = world
    url = path.format(**ids)
    other = getattr(api_as(theirs[allowed]), method)(url, {}, format="json")
    assert other.status_code == 404, (url, other.status_code)
    if wrong:
        res = getattr(api_as(ours[wrong]), method)(url, {}, format="json")
        assert res.status_code == 403, (url, res.status_code)
    ok = getattr(api_as(ours[allowed]), method)(url, {}, format="json")
    assert ok.status_code in (200, 201), (url, ok.status_code, ok.content[:300])


@pytest.mark.parametrize("path, allowed, wrong", API_LISTS)
def test_api_lists_never_show_another_tenant(world, path, allowed, wrong):
    tenant, ours, theirs, ids, _ = world
    from apps.accounts.access import audit
    from apps.sites.enrollment import create_enrollment_code

    create_enrollment_code(tenant.site, ours[Role.FIELD_TECH])  # also writes an audit event
    audit(ours[Role.ADMIN], "test.event", target="x")
    mine = api_as(ours[allowed]).get(path)
    assert mine.status_code == 200
    assert mine.json()["count"] >= 0
    other = api_as(theirs[allowed]).get(path)
    assert other.status_code == 200
    our_ids = {str(r["id"]) for r in mine.json()["results"]}
    their_ids = {str(r["id"]) for r in other.json()["results"]}
    assert not our_ids & their_ids
    if wrong:
        assert api_as(ours[wrong]).get(path).status_code == 403


@pytest.mark.parametrize("method, path, allowed, wrong", PAGES)
def test_pages_with_objects(world, method, path, allowed, wrong):
    tenant, ours, theirs, ids, _ = world
    url = path.format(**ids)
    assert getattr(page_as(theirs[allowed]), method)(url).status_code == 404
    assert getattr(page_as(ours[wrong]), method)(url).status_code == 403
    assert getattr(page_as(ours[allowed]), method)(url).status_code in (200, 302)


@pytest.mark.parametrize("method, path, allowed, wrong", PAGES_UNSCOPED)
def test_pages_by_role(world, method, path, allowed, wrong):
    tenant, ours, theirs, ids, rival_site = world
    res = getattr(page_as(ours[allowed]), method)(path)
    assert res.status_code == 200
    assert rival_site.name.encode() not in res.content
    if wrong:
        assert getattr(page_as(ours[wrong]), method)(path).status_code == 403
    assert Client().get(path).status_code == 302  # anonymous: to the login page


def test_enrollment_code_for_another_tenants_site_is_404(world):
    tenant, ours, theirs, ids, rival_site = world
    res = page_as(ours[Role.FIELD_TECH]).post("/devices/enrollment-codes/", {"site": rival_site.id})
    assert res.status_code == 404


def test_api_token_scopes(world):
    tenant, *_ = world
    from apps.accounts.tokens import create_api_token

    class Req:  # create_api_token needs only who is asking
        user = world[1][Role.ADMIN]
        META = {}

    _, secret = create_api_token(Req, "reader", ["telemetry:read"])
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert c.get(f"/api/v1/sites/{tenant.site.id}/trend/").status_code == 200
    assert c.get("/api/v1/devices/").status_code == 403  # sites:read not granted
    assert c.get("/api/v1/api-tokens/").status_code == 403
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer aw_nope")
    assert bad.get("/api/v1/sites/").status_code == 401


@pytest.fixture
def bravo(make_org, make_site, make_user, make_device):
    """Another organisation whose every object carries a name that must never show."""
    from apps.alerts.models import AlertRule
    from apps.datasets.models import Dataset
    from apps.training.models import ModelVersion

    org = make_org("bravo")
    site = make_site(org, "bravo-secret-site", zones=("Bravo-Secret-Zone",))
    make_device(site, "bravo-secret-board")
    owner = make_user(org, Role.ADMIN, username="bravo-admin", all_sites=True, password=None)
    AlertRule.objects.create(site=site, name="Bravo-Secret-Rule", threshold_pct=40, created_by=owner)
    ds = Dataset.objects.create(organisation=org, name="Bravo-Secret-Dataset", created_by=owner)
    ModelVersion.objects.create(organisation=org, version="bravo-secret-model@1", name="bravo-secret-model", number=1,
                                dataset=ds, dataset_name=ds.name, onnx_file="x.onnx", sha256="0" * 64)
    return site, ["bravo-secret", "Bravo-Secret", "Bravo-secret"]


@pytest.mark.parametrize("role", [Role.ADMIN, Role.FIELD_TECH, Role.RESEARCHER, Role.SAFETY_OFFICER])
def test_browsable_api_forms_and_filters_never_name_another_tenants_objects(world, bravo, role):
    """Every GET list endpoint of the schema and our own objects' detail endpoints,
    rendered as HTML (forms and filter drop-downs included) for each of our roles."""
    tenant, ours, _, ids, _ = world
    _, secrets_ = bravo
    c = Client()
    c.force_login(ours[role])
    schema = c.get("/api/v1/schema/?format=json").json()
    lists = [p for p, ops in schema["paths"].items() if "get" in ops and "{" not in p]
    details = [p.replace("{id}", str(ids["site"])) for p in schema["paths"] if p.startswith("/api/v1/sites/{id}/")]
    details += [f"/api/v1/devices/{ids['device']}/"]
    assert len(lists) > 10
    seen = 0
    for path in lists + details:
        res = c.get(path, HTTP_ACCEPT="text/html")
        if res.status_code != 200 or not res["Content-Type"].startswith("text/html"):
            continue
        seen += 1
        html = res.content.decode()
        leaked = [s for s in secrets_ if s in html]
        assert not leaked, f"{path} as {role} shows {leaked}"
    assert seen > 5


def test_another_tenants_id_answers_like_an_unknown_one(world, bravo):
    """Filters and related fields: B's site, zone or data set reads exactly as no such id:
    a filter by either matches nothing (an empty page), a body naming either is a 404."""
    from apps.sites.models import Zone

    tenant, ours, _, ids, _ = world
    b_site, _ = bravo
    b_zone = Zone.objects.get(site=b_site)
    api = api_as(ours[Role.ADMIN])

    def same(path, **params):
        theirs = api.get(path, {k: v("theirs") for k, v in params.items()})
        unknown = api.get(path, {k: v("unknown") for k, v in params.items()})
        assert theirs.status_code == unknown.status_code == 200, (theirs.status_code, unknown.status_code)
        assert theirs.json() == unknown.json() and theirs.json()["count"] == 0

    pick = {"theirs": b_site.id, "unknown": 999999}
    same("/api/v1/alerts/", site=pick.get)
    same("/api/v1/devices/", site=pick.get)
    same("/api/v1/alert-rules/", site=pick.get)
    res_theirs = api.patch(f"/api/v1/devices/{ids['device']}/", {"zone": b_zone.id}, format="json")
    res_unknown = api.patch(f"/api/v1/devices/{ids['device']}/", {"zone": 999999}, format="json")
    assert res_theirs.status_code == res_unknown.status_code == 404
    assert str(res_theirs.json()).replace(str(b_zone.id), "ID") == str(res_unknown.json()).replace("999999", "ID")


def test_ids_that_are_not_numbers_are_a_400_with_the_reason(world, bravo):
    """`zone: "abc"` on an enrollment code, `?site=abc` on devices: once 500s."""
    from apps.sites.models import Zone

    tenant, ours, _, ids, _ = world
    b_site, _ = bravo
    tech = api_as(ours[Role.FIELD_TECH])
    for zone in ("abc", "²", "9" * 5000, 999999, Zone.objects.get(site=b_site).id):
        res = tech.post(f"/api/v1/sites/{ids['site']}/enrollment-codes/", {"zone": zone}, format="json")
        assert res.status_code == 400 and "no zone" in res.json()["zone"], res.content
    assert tech.get("/api/v1/devices/", {"site": "abc"}).status_code == 400
    assert tech.get("/api/v1/devices/", {"zone": "abc"}).status_code == 400
    for body in ("[]", '"x"', "3"):  # not an object: every endpoint reads named fields
        res = tech.post(f"/api/v1/sites/{ids['site']}/enrollment-codes/", body, content_type="application/json")
        assert res.status_code == 400 and "JSON object" in res.json()["detail"]


def test_metrics_are_for_the_operator_not_any_organisation_role(world):
    """/metrics (Prometheus) reports every organisation's boards: no organisation role
    reads it — not even an admin — and an anonymous caller is asked for the token."""
    _, ours, _, _, _ = world
    for role, user in ours.items():
        assert page_as(user).get("/metrics").status_code == 403, role
    res = Client().get("/metrics")
    assert res.status_code == 401 and res["WWW-Authenticate"].startswith("Bearer")
