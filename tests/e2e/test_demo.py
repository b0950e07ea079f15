"""The first ten minutes: after `seed_demo` (what `make run` does first), a safety officer
opening the Assembly Hall finds two weeks of history, a filled weekday × hour heatmap
and an alert from a stressful afternoon to acknowledge — all through the release path —
and the demo's real board (detector, tracker and shipped model on a generated scene)
streams like any board, its FPS, backend and model on the Devices page."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from apps.alerts.models import Alert
from apps.sites.models import Site

from tests.support import login

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
    for name in ("officer", "fieldtech"):
        user = get_user_model().objects.get(username=name)
        user.set_password("a-long-test-password")
        user.save()

    login(page, platform_server, "officer")
    page.goto(f"{platform_server.url}/sites/{site.id}/")
    page.wait_for_function("Number(document.querySelector('#trend').dataset.points) > 10000", timeout=30000)
    # 14 days of weekday shifts: every weekday's working hours have a share
    page.wait_for_function("Number(document.querySelector('#heatmap').dataset.filled) >= 5 * 14", timeout=30000)
    page.select_option("#range", "168")
    page.wait_for_function("Number(document.querySelector('#trend').dataset.points) > 100000", timeout=30000)
    assert "Stressful afternoon" in page.inner_text("body")
    # A year at day buckets (read from the day rollups), with last year's line beside it.
    page.select_option("#range", "8760")
    page.check("#compare")
    page.wait_for_function("(document.querySelector('#trend').data || []).some("
                           "t => t.name === 'negative, a year earlier')", timeout=30000)
    days = page.evaluate("document.querySelector('#trend').data[0].x.length")
    assert 14 <= days <= 16, days
    csv = page.request.get(f"{platform_server.url}/api/v1/sites/{site.id}/heatmap/?format=csv")
    assert csv.status == 200 and csv.text().count("\n") >= 7

    # The real board: enrolled with a code, then `python -m edge_agent run` on the scene.
    from affectwatch import demo_board
    from apps.sites.models import Camera, Device
    from apps.telemetry.models import EmotionEvent, MinuteRollup
    from tests.telemetry_support import release_minutes

    root = Path(__file__).resolve().parents[2]
    shipped = json.loads((root / "edge_agent" / "models" / "liexnet-fer2013.json").read_text())["version"]
    agent = subprocess.Popen(demo_board.prepare(tmp_path, platform_server.url, sys.executable, root), cwd=root,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        board = Device.objects.get(name=demo_board.NAME, site=site)
        assert not board.simulated
        deadline = time.monotonic() + 90
        while not (EmotionEvent.objects.filter(device=board).count() >= 20
                   and Device.objects.get(pk=board.pk).model_version == shipped
                   and Camera.objects.filter(device=board, fps__isnull=False).exists()):  # a heartbeat's report
            assert time.monotonic() < deadline and agent.poll() is None, "the real board sent nothing"
            time.sleep(1)
        assert not (tmp_path / "demo-board" / "frames").exists()  # nothing but labels leaves the scene
        release_minutes(board)  # what beat does 90 s later: its minutes reach the dashboard
        assert MinuteRollup.objects.filter(device=board).exists()
        page.context.clear_cookies()
        login(page, platform_server, "fieldtech")  # board health is the field tech's page
        page.goto(f"{platform_server.url}/devices/")
        row = page.locator(f"tr[data-device='{board.id}']")
        text = row.inner_text()
        assert "onnxruntime" in text and shipped in text and "line-1-cam (" in text, text  # camera with its fps
        assert "simulator" not in text
    finally:
        agent.terminate()
        agent.wait(20)
