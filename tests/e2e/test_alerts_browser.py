"""A safety officer acknowledges, then resolves, an alert in the browser."""
import pytest

from apps.alerts.models import Alert
from tests.integration.alerts_support import evaluate, feed, make_rule

from tests.support import login

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("exact_counts")]


def test_officer_acknowledges_then_resolves_an_alert(platform_server, tenant, page, tmp_path):
    make_rule(tenant.site, name="Shift stress", threshold_pct=50)
    evaluate(feed(tenant.device, negative=15, neutral=5))
    alert = Alert.objects.get()
    row = f"#alert-{alert.pk}"

    login(page, platform_server, tenant.officer.username)
    page.goto(f"{platform_server.url}/alerts/")
    page.wait_for_selector(f"{row}[data-state=open]")
    assert "Shift stress" in page.inner_text(row) and "75.0%" in page.inner_text(row)

    page.screenshot(path=str(tmp_path / "alerts-open.png"))
    page.click(f"{row} button.acknowledge")
    page.wait_for_selector(f"{row}[data-state=acknowledged]")
    assert "acknowledged" in page.inner_text(".messages")
    assert page.locator(f"{row} button.acknowledge").count() == 0
    alert.refresh_from_db()
    assert alert.state == "acknowledged" and alert.acknowledged_by == tenant.officer

    page.fill(f"{row} input[name=note]", "Line 1 got an extra break")
    page.click(f"{row} button.resolve")
    page.wait_for_selector(".messages li.success")
    assert page.locator(row).count() == 0  # the default view shows active alerts only
    page.select_option("select[name=state]", "resolved")
    page.wait_for_selector(f"{row}[data-state=resolved]")
    assert "Line 1 got an extra break" in page.inner_text(row)
    page.screenshot(path=str(tmp_path / "alerts.png"))
    alert.refresh_from_db()
    assert (alert.state, alert.resolved_by, alert.note) == ("resolved", tenant.officer, "Line 1 got an extra break")
