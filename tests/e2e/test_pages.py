"""The main pages as people meet them, in headless Chromium."""
import uuid
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from apps.accounts.models import Role
from apps.sites.models import Device, EnrollmentCode

from tests.telemetry_support import release_minutes

from tests.support import login

pytestmark = pytest.mark.browser


def post_batch(server, token, people=10, per_person=60, label="negative", minutes_ago=1, first=0):
    """`people` tracks with `per_person` detections each in one minute: a realistic
    amount (a minute of one person is at most 60), enough to clear the server's noise
    floor at the default ε."""
    ts = (timezone.now() - timedelta(minutes=minutes_ago)).isoformat()
    events = [{"ts": ts, "camera": "cam0", "track": str(first + t), "label": label, "confidence": 0.8}
              for t in range(people) for _ in range(per_person)]
    res = requests.post(f"{server.url}/api/v1/ingest/", json={"batch_id": str(uuid.uuid4()), "events": events},
                        headers={"Authorization": f"Device {token}"}, timeout=10)
    assert res.status_code == 200, res.text


def publish(device):
    """The release beat would make 90 s later, now, without noise (`exact_counts`)."""
    release_minutes(device, since=timezone.now() - timedelta(minutes=5))


def test_overview_shows_negative_share_and_device_health(platform_server, tenant, page, tmp_path, exact_counts):
    post_batch(platform_server, tenant.token, label="negative")
    post_batch(platform_server, tenant.token, label="neutral", first=10)
    publish(tenant.device)
    login(page, platform_server, tenant.officer.username)
    card = page.locator(f".site-card[data-site='{tenant.site.id}']")
    assert card.locator(".neg-share").inner_text() == "50.0%"
    assert "0/1 devices online" in card.inner_text()
    page.wait_for_selector(".spark .main-svg")
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)


def test_site_page_draws_zones_and_heatmap_and_offers_csv(platform_server, tenant, page, tmp_path, exact_counts):
    post_batch(platform_server, tenant.token, people=20)
    publish(tenant.device)
    login(page, platform_server, tenant.officer.username)
    page.goto(f"{platform_server.url}/sites/{tenant.site.id}/")
    page.wait_for_selector("#zones .main-svg")
    page.wait_for_selector("#heatmap .main-svg")
    page.wait_for_function("document.querySelector('#trend').dataset.points === '1200'")
    href = page.get_attribute("#trend-csv", "href")
    assert "format=csv" in href
    csv_text = page.evaluate("async (u) => (await fetch(u)).text()", href)
    assert csv_text.startswith("t,negative,neutral,positive,tracks,suppressed")
    page.screenshot(path=str(tmp_path / "site.png"), full_page=True)


def test_field_tech_creates_a_code_and_revokes_a_board(platform_server, tenant, make_user, page, tmp_path):
    tech = make_user(tenant.org, Role.FIELD_TECH, sites=[tenant.site])
    login(page, platform_server, tech.username)
    assert page.url.endswith("/devices/")  # field techs land on their page
    page.select_option("#enroll-site", str(tenant.site.id))
    page.click("text=Create enrollment code")
    code = page.locator("#new-code .secret").inner_text().split("--code ")[1].strip()
    assert EnrollmentCode.objects.get(hint=code[-4:]).state == "open"
    # The code enrolls a board through the real API, and the board shows up.
    res = requests.post(f"{platform_server.url}/api/v1/enroll/", json={"code": code, "name": "new-board"}, timeout=10)
    assert res.status_code == 201, res.text
    page.reload()
    assert page.locator("#devices tr", has_text="new-board").count() == 1
    assert page.locator("#new-code").count() == 0  # the code was shown once
    page.on("dialog", lambda d: d.accept())
    page.locator("#devices tr", has_text=tenant.device.name).locator("text=Revoke").click()
    page.wait_for_selector(f"tr[data-device='{tenant.device.id}'] .status >> text=revoked")
    assert Device.objects.get(pk=tenant.device.pk).revoked_at is not None
    page.screenshot(path=str(tmp_path / "devices.png"), full_page=True)
    post = requests.post(f"{platform_server.url}/api/v1/ingest/", json={"batch_id": str(uuid.uuid4()), "events": []},
                         headers={"Authorization": f"Device {tenant.token}"}, timeout=10)
    assert post.status_code == 401


def test_api_docs_render_without_any_cdn(platform_server, tenant, page):
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(platform_server.url) else None)
    login(page, platform_server, tenant.officer.username)
    page.goto(f"{platform_server.url}/api/v1/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20000)
    assert page.locator(".opblock-summary-path", has_text="/api/v1/ingest/").count() >= 1
    assert outside == []
