"""A safety officer watches a site page while an agent posts a batch: the chart changes
when the minute is released."""
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from tests.telemetry_support import release_minutes

from tests.support import login

pytestmark = pytest.mark.browser


def release_in_thread(device, since):
    from django.db import connection

    try:
        release_minutes(device, since=since)
    finally:
        connection.close()


def test_chart_updates_live_when_a_minute_is_released(platform_server, tenant, page, tmp_path, exact_counts):
    """Nothing moves when a batch arrives (that would say someone was seen); the chart
    changes when the release publishes the minute."""
    login(page, platform_server, tenant.officer.username)
    page.click(f"text={tenant.site.name}")
    page.wait_for_selector("#live[data-state=live]", timeout=15000)
    page.wait_for_selector("#trend .main-svg")  # plotly drew the (empty) chart
    assert page.get_attribute("#trend", "data-points") == "0"

    now = timezone.now()
    labels = ["negative", "neutral", "neutral", "positive", "positive"]
    events = [{"ts": now.isoformat(), "camera": "cam0", "track": str(t), "label": labels[t % 5], "confidence": 0.7}
              for t in range(20) for _ in range(60)]  # twenty people for a minute
    res = requests.post(f"{platform_server.url}/api/v1/ingest/", json={"batch_id": str(uuid.uuid4()), "events": events},
                        headers={"Authorization": f"Device {tenant.token}"}, timeout=10)
    assert res.status_code == 200, res.text
    page.wait_for_timeout(1500)
    assert page.get_attribute("#trend", "data-points") == "0"

    # As the Celery worker would, on a thread without the browser driver's event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(release_in_thread, tenant.device, now - timedelta(minutes=5)).result()
    page.wait_for_function("document.querySelector('#trend').dataset.points === '1200'", timeout=5000)
    page.screenshot(path=str(tmp_path / "site.png"))
    # The three series are drawn.
    assert page.locator("#trend .barlayer .trace").count() == 3


def test_login_required_for_site_pages(platform_server, tenant, page):
    page.goto(f"{platform_server.url}/sites/{tenant.site.id}/")
    assert "/login/" in page.url
