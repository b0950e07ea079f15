"""The alerts API and pages: who may do what (another tenant's user gets 404, a wrong
role 403), rule CRUD with its audit trail, acknowledge/resolve, tokens with alerts:read."""
import pytest
from django.template import Context, Template
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken, AuditEvent, Role
from apps.accounts.secrets import new_secret
from apps.alerts.models import Alert, AlertRule, AlertState

from tests.support import api_as, page_as

from .alerts_support import evaluate, feed, make_rule

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("exact_counts")]

SO, FT, RS, AD = Role.SAFETY_OFFICER, Role.FIELD_TECH, Role.RESEARCHER, Role.ADMIN
RULE_FORM = {"name": "Afternoon", "threshold_pct": "45", "window_minutes": "15", "min_detections": "30",
             "enabled": "on", "emails": "a@acme.example, b@acme.example", "webhook_url": "", "cooldown_minutes": "20"}

# (method, path, body, status for the allowed role); the wrong roles are field tech and researcher.
API = [
    ("get", "/api/v1/alert-rules/{rule}/", None, 200),
    ("patch", "/api/v1/alert-rules/{rule}/", {"threshold_pct": 60}, 200),
    ("post", "/api/v1/alert-rules/{rule}/rotate-secret/", None, 200),
    ("get", "/api/v1/alerts/{alert}/", None, 200),
    ("post", "/api/v1/alerts/{alert}/acknowledge/", {"note": "on it"}, 200),
    ("post", "/api/v1/alerts/{alert}/resolve/", {}, 200),
    ("delete", "/api/v1/alert-rules/{rule}/", None, 204),
]
PAGES = [
    ("get", "/alerts/?site={site}", None, 200),
    ("get", "/sites/{site}/alert-rules/", None, 200),
    ("post", "/sites/{site}/alert-rules/", RULE_FORM, 200),
    ("get", "/sites/{site}/alert-rules/{rule}/", None, 200),
    ("post", "/sites/{site}/alert-rules/{rule}/", {**RULE_FORM, "name": "Renamed"}, 302),
    ("post", "/sites/{site}/alert-rules/{rule}/rotate-secret/", None, 200),
    ("post", "/alerts/{alert}/acknowledge/", None, 302),
    ("post", "/alerts/{alert}/resolve/", {"note": "done"}, 302),
    ("post", "/sites/{site}/alert-rules/{rule}/delete/", None, 302),
]


@pytest.fixture
def world(tenant, make_org, make_site, make_user):
    """An open alert of a rule at our site; users of every role in our tenant and in a
    rival one; one of our officers is not assigned to the site."""
    rule = make_rule(tenant.site, emails=["officer@acme.example"])
    evaluate(feed(tenant.device, negative=15, neutral=5))
    alert = Alert.objects.get()
    ours = {r: make_user(tenant.org, r, username=f"ours-{r}", sites=[tenant.site], password=None)
            for r in (SO, FT, RS, AD)}
    ours["unassigned"] = make_user(tenant.org, SO, username="ours-unassigned", password=None)
    rival = make_org("rival")
    rival_site = make_site(rival, "rival-plant")
    theirs = {r: make_user(rival, r, username=f"theirs-{r}", all_sites=True, password=None) for r in (SO, AD)}
    ids = {"site": tenant.site.id, "rule": rule.id, "alert": alert.id}
    return tenant, ours, theirs, ids, rival_site


def call(client, method, url, body, api):
    if api:
        return getattr(client, method)(url, body or {}, format="json")
    return getattr(client, method)(url, body or {})


@pytest.mark.parametrize("method, path, body, ok", API + PAGES, ids=[f"{m} {p}" for m, p, *_ in API + PAGES])
def test_matrix(world, method, path, body, ok):
    tenant, ours, theirs, ids, _ = world
    url = path.format(**ids)
    api = url.startswith("/api/")
    client = api_as if api else page_as
    for user in (theirs[SO], theirs[AD], ours["unassigned"]):
        res = call(client(user), method, url, body, api)
        assert res.status_code == 404, (user.username, url, res.status_code)
    for role in (FT, RS):
        res = call(client(ours[role]), method, url, body, api)
        assert res.status_code == 403, (role, url, res.status_code)
    assert Alert.objects.get().state == AlertState.OPEN and AlertRule.objects.exists()  # nothing changed so far
    res = call(client(ours[SO]), method, url, body, api)
    assert res.status_code == ok, (url, res.status_code, res.content[:500])


@pytest.mark.parametrize("path", ["/api/v1/alert-rules/{rule}/", "/api/v1/alerts/{alert}/",
                                  "/sites/{site}/alert-rules/", "/alerts/?site={site}"])
def test_admins_see_every_site_of_their_organisation(world, path):
    tenant, ours, theirs, ids, _ = world
    url = path.format(**ids)
    client = api_as(ours[AD]) if url.startswith("/api/") else page_as(ours[AD])
    assert client.get(url).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/alert-rules/", "/api/v1/alerts/", "/alerts/"])
def test_lists_never_show_another_tenant(world, path):
    tenant, ours, theirs, ids, rival_site = world
    make_rule(rival_site, name="Their rule")
    api = path.startswith("/api/")
    mine = (api_as if api else page_as)(ours[SO]).get(path)
    other = (api_as if api else page_as)(theirs[SO]).get(path)
    assert mine.status_code == other.status_code == 200
    if api:
        assert mine.json()["count"] == 1 and other.json()["count"] == (1 if "rules" in path else 0)
        assert mine.json()["results"][0]["id"] != (other.json()["results"] or [{"id": None}])[0]["id"]
    else:
        assert f'data-alert="{ids["alert"]}"'.encode() in mine.content
        assert f'data-alert="{ids["alert"]}"'.encode() not in other.content
        assert f">{tenant.site.name}<".encode() in mine.content and f">{tenant.site.name}<".encode() not in other.content
    for role in (FT, RS):
        assert (api_as if api else page_as)(ours[role]).get(path).status_code == 403
    if not api:
        assert Client().get(path).status_code == 302  # anonymous: to the login page


def test_rule_crud_through_the_api_is_audited(world):
    tenant, ours, theirs, ids, _ = world
    officer = api_as(ours[SO])
    res = officer.post("/api/v1/alert-rules/", {
        "site": tenant.site.id, "name": "Night", "threshold_pct": 35.5, "window_minutes": 30, "min_detections": 40,
        "emails": ["Night@Acme.example"], "webhook_url": "https://hooks.example.com/aw"}, format="json")
    assert res.status_code == 201, res.content
    created = res.json()
    secret = created["webhook_secret"]
    assert secret.startswith("whsec_") and created["webhook_secret_hint"] == f"…{secret[-4:]}"
    assert created["emails"] == ["night@acme.example"] and created["created_by"] == ours[SO].username
    got = officer.get(f"/api/v1/alert-rules/{created['id']}/").json()
    assert "webhook_secret" not in got and secret not in str(got)

    assert officer.patch(f"/api/v1/alert-rules/{created['id']}/", {"threshold_pct": 50, "enabled": False},
                         format="json").status_code == 200
    rotated = officer.post(f"/api/v1/alert-rules/{created['id']}/rotate-secret/").json()["webhook_secret"]
    assert rotated != secret and AlertRule.objects.get(pk=created["id"]).webhook_secret == rotated
    assert officer.delete(f"/api/v1/alert-rules/{created['id']}/").status_code == 204

    events = list(AuditEvent.objects.filter(action__startswith="alert_rule.").order_by("at", "id"))
    assert [e.action for e in events] == ["alert_rule.create", "alert_rule.update", "alert_rule.rotate_secret",
                                          "alert_rule.delete"]
    assert all(e.actor == ours[SO] and e.organisation == tenant.org for e in events)
    assert events[0].details["settings"]["threshold_pct"] == 35.5
    assert events[1].details["changes"] == {"threshold_pct": [35.5, 50], "enabled": [True, False]}
    assert not any(secret in str(e.details) or rotated in str(e.details) for e in events)


def test_rules_are_validated(world):
    tenant, ours, theirs, ids, rival_site = world
    officer = api_as(ours[SO])
    base = {"site": tenant.site.id, "name": "X", "threshold_pct": 40}
    for bad, status in (({"site": rival_site.id}, 404), ({"threshold_pct": 140}, 400), ({"window_minutes": 0}, 400),
                        ({"emails": ["not-an-address"]}, 400), ({"webhook_url": "ftp://example.com/x"}, 400),
                        ({"name": "High negative share"}, 409)):  # a site naming nothing; a name taken
        res = officer.post("/api/v1/alert-rules/", {**base, **bad}, format="json")
        assert res.status_code == status, (bad, res.content)
    # Another tenant's site reads exactly like a site that does not exist.
    missing = officer.post("/api/v1/alert-rules/", {**base, "site": 999999}, format="json").json()
    rival = officer.post("/api/v1/alert-rules/", {**base, "site": rival_site.id}, format="json").json()
    assert missing["site"][0].replace("999999", "N") == rival["site"][0].replace(str(rival_site.id), "N")
    res = officer.patch(f"/api/v1/alert-rules/{ids['rule']}/", {"site": rival_site.id}, format="json")
    assert res.status_code == 404


def test_acknowledge_then_resolve_through_the_api(world):
    tenant, ours, theirs, ids, _ = world
    officer = api_as(ours[SO])
    url = f"/api/v1/alerts/{ids['alert']}/"
    res = officer.post(url + "acknowledge/", {"note": "walking over"}, format="json")
    assert res.status_code == 200 and res.json()["state"] == "acknowledged"
    assert res.json()["acknowledged_by"] == ours[SO].username
    assert officer.post(url + "acknowledge/", {}, format="json").status_code == 409
    res = officer.post(url + "resolve/", {"note": "extra break agreed"}, format="json")
    body = res.json()
    assert res.status_code == 200 and body["state"] == "resolved" and body["note"] == "extra break agreed"
    assert body["resolved_by"] == ours[SO].username and body["resolved_at"]
    assert officer.post(url + "resolve/", {}, format="json").status_code == 409
    actions = list(AuditEvent.objects.filter(action__startswith="alert.").values_list("action", flat=True))
    assert sorted(actions) == ["alert.acknowledge", "alert.resolve"]


def test_alert_list_filters_and_pages(world):
    tenant, ours, theirs, ids, _ = world
    officer = api_as(ours[SO])
    second = make_rule(tenant.site, name="Second", threshold_pct=10)
    evaluate(feed(tenant.device, negative=15, neutral=5))
    assert second.alerts.count() == 1
    officer.post(f"/api/v1/alerts/{ids['alert']}/resolve/", {}, format="json")
    page = officer.get("/api/v1/alerts/", {"limit": 1}).json()
    assert page["count"] == 2 and len(page["results"]) == 1 and page["next"]
    assert [a["rule_name"] for a in officer.get("/api/v1/alerts/", {"state": "active"}).json()["results"]] == ["Second"]
    assert officer.get("/api/v1/alerts/", {"state": "resolved"}).json()["count"] == 1
    assert officer.get("/api/v1/alerts/", {"site": tenant.site.id, "rule": second.id}).json()["count"] == 1
    assert officer.get("/api/v1/alerts/", {"state": "nonsense"}).status_code == 400
    listed = officer.get("/api/v1/alerts/", {"state": "active"}).json()["results"][0]
    assert {d["channel"] for d in listed["deliveries"]} <= {"email", "webhook"}


def test_api_tokens_need_alerts_read_and_cannot_act(world, make_org):
    tenant, ours, theirs, ids, _ = world

    def token(org, scopes):
        secret, key_hash = new_secret("aw")
        ApiToken.objects.create(organisation=org, name="t", prefix=secret[:10], key_hash=key_hash, scopes=scopes)
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return c

    reader = token(tenant.org, ["alerts:read"])
    assert reader.get("/api/v1/alerts/").json()["count"] == 1
    assert reader.get(f"/api/v1/alerts/{ids['alert']}/").status_code == 200
    assert reader.post(f"/api/v1/alerts/{ids['alert']}/acknowledge/", {}, format="json").status_code == 403
    assert reader.get("/api/v1/alert-rules/").status_code == 403  # rules hold addresses and secrets
    assert token(tenant.org, ["telemetry:read"]).get("/api/v1/alerts/").status_code == 403
    rival_reader = token(theirs[SO].membership.organisation, ["alerts:read"])
    assert rival_reader.get(f"/api/v1/alerts/{ids['alert']}/").status_code == 404
    assert rival_reader.get("/api/v1/alerts/").json()["count"] == 0


def test_rule_editor_pages(world):
    tenant, ours, theirs, ids, _ = world
    officer = page_as(ours[SO])
    res = officer.post(f"/sites/{tenant.site.id}/alert-rules/", RULE_FORM)
    rule = AlertRule.objects.get(name="Afternoon")
    assert res.status_code == 200 and rule.webhook_secret.encode() in res.content  # shown once, here
    assert rule.emails == ["a@acme.example", "b@acme.example"] and rule.threshold_pct == 45
    listing = officer.get(f"/sites/{tenant.site.id}/alert-rules/")
    edit = officer.get(f"/sites/{tenant.site.id}/alert-rules/{rule.id}/")
    for page in (listing, edit):
        assert page.status_code == 200 and rule.webhook_secret.encode() not in page.content
    assert b"a@acme.example" in edit.content

    res = officer.post(f"/sites/{tenant.site.id}/alert-rules/", {**RULE_FORM, "webhook_url": "gopher://x"})
    assert res.status_code == 200 and AlertRule.objects.filter(name="Afternoon").count() == 1  # form errors shown
    res = officer.post(f"/sites/{tenant.site.id}/alert-rules/{rule.id}/", {**RULE_FORM, "threshold_pct": "55"})
    assert res.status_code == 302
    rule.refresh_from_db()
    assert rule.threshold_pct == 55
    change = AuditEvent.objects.filter(action="alert_rule.update").get()
    assert change.details["changes"] == {"threshold_pct": [45.0, 55.0]}


def test_alerts_page_acknowledge_and_resolve(world):
    tenant, ours, theirs, ids, _ = world
    officer = page_as(ours[SO])
    page = officer.get("/alerts/")
    assert b"Acknowledge" in page.content and b"High negative share" in page.content
    res = officer.post(f"/alerts/{ids['alert']}/acknowledge/", {"next": f"/sites/{tenant.site.id}/"})
    assert res.status_code == 302 and res["Location"] == f"/sites/{tenant.site.id}/"
    res = officer.post(f"/alerts/{ids['alert']}/resolve/", {"note": "fixed", "next": "https://evil.example/"})
    assert res["Location"] == "/alerts/"  # no open redirect
    alert = Alert.objects.get()
    assert (alert.state, alert.note, alert.resolved_by) == (AlertState.RESOLVED, "fixed", ours[SO])
    row = f'data-alert="{alert.pk}"'.encode()
    assert row not in officer.get("/alerts/").content  # active alerts only by default
    assert row in officer.get("/alerts/?state=resolved").content


@pytest.mark.parametrize("role, shown", [(SO, True), (AD, True), (FT, False), (RS, False)])
def test_recent_alerts_include(world, role, shown):
    tenant, ours, theirs, ids, _ = world
    request = RequestFactory().get(f"/sites/{tenant.site.id}/")
    request.user = ours[role]
    html = Template('{% include "alerts/_recent.html" with site=site %}').render(
        Context({"site": tenant.site, "request": request, "csrf_token": "x"}))
    assert ('id="recent-alerts"' in html) is shown
    assert (f'data-alert="{ids["alert"]}"' in html) is shown
    request.user = theirs[AD]
    html = Template("{% load alerts %}{% recent_alerts site %}").render(Context({"site": tenant.site, "request": request}))
    assert "recent-alerts" not in html
