"""A safety officer watches a site page while an agent posts a batch: the chart changes."""
import uuid

import pytest
import requests
from django.utils import timezone

from .conftest import login

pytestmark = pytest.mark.browser


def test_chart_updates_live_when_a_batch_arrives(platform_server, tenant, page, tmp_path):
    login(page, platform_server, tenant.officer.username)
    page.click(f"text={tenant.site.name}")
    page.wait_for_selector("#live[data-state=live]", timeout=15000)
    page.wait_for_selector("#trend .main-svg")  # plotly drew the (empty) chart
    assert page.get_attribute("#trend", "data-points") == "0"

    events = [{"ts": timezone.now().isoformat(), "camera": "cam0", "track": str(t), "label": label,
               "confidence": 0.7} for t, label in enumerate(["negative", "neutral", "neutral", "positive", "positive"])]
    res = requests.post(f"{platform_server.url}/api/v1/ingest/", json={"batch_id": str(uuid.uuid4()), "events": events},
                        headers={"Authorization": f"Device {tenant.token}"}, timeout=10)
    assert res.status_code == 200, res.text

    page.wait_for_function("document.querySelector('#trend').dataset.points === '5'", timeout=5000)
    page.screenshot(path=str(tmp_path / "site.png"))
    # The three series are drawn.
    assert page.locator("#trend .barlayer .trace").count() == 3


def test_login_required_for_site_pages(platform_server, tenant, page):
    page.goto(f"{platform_server.url}/sites/{tenant.site.id}/")
    assert "/login/" in page.url
