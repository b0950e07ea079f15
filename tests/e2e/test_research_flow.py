"""A researcher goes from a zip of consented images to a deployed model version
through the web UI alone: upload → a sweep over w (live progress, validation curves) →
model version → deploy to a site's canary board → the canary reports it → roll-out to
the rest → complete → roll back, with each board's desired version checked at each step."""
import os
import shutil
from pathlib import Path

import pytest
import requests
from django.conf import settings

from apps.accounts.models import Role
from tests.research_data import itch_zip

from tests.support import login

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def test_researcher_zip_to_deployed_model(platform_server, celery_worker, tenant, make_user, make_device, page,
                                          tmp_path):
    shots = Path(os.environ.get("AFFECTWATCH_SCREENSHOTS", tmp_path))
    researcher = make_user(tenant.org, Role.RESEARCHER, all_sites=True)
    second, second_token = make_device(tenant.site, "board-2")
    for token in (tenant.token, second_token):  # both boards are up: they heartbeat, as boards do
        requests.post(f"{platform_server.url}/api/v1/heartbeat/", json={}, timeout=10,
                      headers={"Authorization": f"Device {token}"}).raise_for_status()
    zip_path = tmp_path / "itch-pilot.zip"
    zip_path.write_bytes(itch_zip(n=60, subjects=10, workers=5))
    try:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        login(page, platform_server, researcher.username)
        nav = page.locator("nav >> text=Research")
        if nav.count():
            nav.first.click()
        else:  # until the navigation links the research pages
            page.goto(f"{platform_server.url}/research/")
        page.fill("#new-dataset input[name=name]", "ITCH pilot")
        page.click("#new-dataset button[type=submit]")
        page.wait_for_selector("text=Import a zip")

        page.set_input_files("#import-file", str(zip_path))
        page.click("#import")
        page.wait_for_selector("#last-import[data-status=accepted]")
        assert "60 images" in page.inner_text("#counts")
        assert page.locator("#gallery img").count() == 48  # first page of the gallery
        page.select_option("select[name=label]", "negative")
        page.click("text=Filter")
        assert page.locator("#gallery img").count() == 20
        assert page.locator("#subjects tbody tr").count() == 10
        page.screenshot(path=str(shots / "dataset.png"), full_page=True)

        page.fill("#finetune-form input[name=epochs]", "10")
        page.fill("#finetune-form input[name=batch_size]", "8")
        page.fill("#finetune-form input[name=lr]", "0.01")
        page.fill("#finetune-form input[name=sweep]", "1, 2")
        page.click("#start-finetune")
        page.wait_for_selector("#live[data-state=live]", timeout=15000)
        page.wait_for_selector("#job-status[data-status=succeeded]", timeout=300000)
        page.wait_for_selector("#model-link", timeout=30000)
        page.wait_for_selector("#roc .main-svg", timeout=30000)  # results drawn after the reload
        page.wait_for_selector("#confusion .main-svg")
        assert page.locator("#sweep tbody tr").count() == 3  # w = 1, 2 on validation, and the base model
        assert page.locator("#test-metrics tbody tr").count() == 2  # the chosen w on test, and the base
        assert page.locator("#quality-gate").count() == 0
        assert page.locator("#gradcam img").count() > 0
        assert int(page.get_attribute("#loss", "data-points")) == 20  # 2 runs × 10 epochs
        assert page.get_attribute("#val-accuracy", "data-runs") == "2"  # one validation curve per w, overlaid
        page.screenshot(path=str(shots / "job.png"), full_page=True)

        page.click("#model-link")
        page.wait_for_selector("#version-name")
        version = page.inner_text("#version-name").split()[0]
        page.click("#promote")
        page.wait_for_selector("#version-status:has-text('Promoted')")
        page.select_option("#deploy-site", str(tenant.site.id))
        page.select_option("#deploy-canary", str(tenant.device.pk))
        page.click("#deploy")
        page.wait_for_selector("#deployments tr[data-status=canary]")

        # The canary board's heartbeat: it is asked for the new model, downloads it, reports it.
        hb = f"{platform_server.url}/api/v1/heartbeat/"
        auth = {"Authorization": f"Device {tenant.token}"}
        answer = requests.post(hb, json={"model_version": "liexnet-fer2013@1"}, headers=auth, timeout=10).json()
        assert answer["model"]["version"] == version
        # The edge agent's own update code: download with the device token, verify the
        # sha256, load and test-run, swap.
        from edge_agent.classifier import load_model
        from edge_agent.model_store import ModelStore

        session = requests.Session()
        session.headers.update(auth)
        store = ModelStore(tmp_path / "agent-state", load_model)
        clf = store.update(session, platform_server.url + answer["model"]["url"], version, answer["model"]["sha256"])
        assert clf.version == version and clf.labels == ("negative", "neutral", "positive")
        assert store.installed()["version"] == version
        requests.post(hb, json={"model_version": clf.version}, headers=auth, timeout=10)
        # The other board is asked for it now.
        other = requests.post(hb, json={"model_version": "liexnet-fer2013@1"},
                              headers={"Authorization": f"Device {second_token}"}, timeout=10).json()
        assert other["model"]["version"] == version
        page.reload()
        page.wait_for_selector("#deployments tr[data-status=rolling_out]")
        assert "asked for " + version in page.inner_text("#deployments")  # per-board state
        # The second board runs it too: the roll-out is complete.
        requests.post(hb, json={"model_version": version}, headers={"Authorization": f"Device {second_token}"},
                      timeout=10).raise_for_status()
        page.reload()
        page.wait_for_selector("#deployments tr[data-status=complete]")
        page.screenshot(path=str(shots / "version.png"), full_page=True)
        # Roll back: every board is asked for what it ran before.
        page.click("#deployments tr[data-status=complete] button:has-text('Roll back')")
        page.wait_for_selector("#deployments tr[data-status=rolled_back]")
        for token in (tenant.token, second_token):
            back = requests.post(hb, json={"model_version": version}, timeout=10,
                                 headers={"Authorization": f"Device {token}"}).json()
            assert back["model"]["version"] != version, back
        assert not errors, errors
    finally:
        from apps.datasets.models import Dataset

        for ds in Dataset.objects.filter(organisation=tenant.org):
            shutil.rmtree(Path(settings.MEDIA_ROOT) / "datasets" / str(ds.id), ignore_errors=True)
        shutil.rmtree(Path(settings.MEDIA_ROOT) / "training" / str(tenant.org.id), ignore_errors=True)
