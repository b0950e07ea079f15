"""The first ten minutes: after `seed_demo` (what `make run` does first), a safety officer
opening the Assembly Hall finds two weeks of history, a filled weekday × hour heatmap
and an alert from a stressful afternoon to acknowledge — all through the release path."""
import pytest
from django.core.management import call_command

from apps.alerts.models import Alert
from apps.sites.models import Site

from .conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def test_a_fresh_demo_has_two_weeks_of_history_a_heatmap_and_an_alert(platform_server, page, settings, tmp_path):
    from django.contrib.auth import get_user_model

    settings.VAR_DIR = tmp_path
    call_command("seed_demo")
    call_command("seed_demo")  # a second start adds nothing
    site = Site.objects.get(slug="assembly-hall")
    alerts = Alert.objects.filter(site=site)
    assert alerts.filter(state="open").count() == 1 and alerts.count() >= 5  # about one a weekday
    assert all(a.rule_name == "Stressful afternoon" for a in alerts)
    officer = get_user_model().objects.get(username="officer")
    officer.set_password("a-long-test-password")
    officer.save()

    login(page, platform_server, "officer")
    page.goto(f"{platform_server.url}/sites/{site.id}/")
    page.wait_for_function("Number(document.querySelector('#trend').dataset.points) > 10000", timeout=30000)
    # 14 days of weekday shifts: every weekday's working hours have a share
    page.wait_for_function("Number(document.querySelector('#heatmap').dataset.filled) >= 5 * 14", timeout=30000)
    page.select_option("#range", "168")
    page.wait_for_function("Number(document.querySelector('#trend').dataset.points) > 100000", timeout=30000)
    assert "Stressful afternoon" in page.inner_text("body")
    csv = page.request.get(f"{platform_server.url}/api/v1/sites/{site.id}/heatmap/?format=csv")
    assert csv.status == 200 and csv.text().count("\n") >= 7
