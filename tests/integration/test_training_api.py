"""Registry, deployments and model downloads: role and tenant checks, the canary
roll-out through heartbeats, roll-back, and which files a device may download."""
import hashlib

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import Role
from apps.datasets.models import Dataset
from apps.sites.models import Device
from apps.training import registry
from apps.training.models import Deployment, FineTuneJob, ModelVersion

pytestmark = pytest.mark.django_db


def tiny_onnx(path, version, labels=("negative", "neutral", "positive")):
    """A real, loadable LiExNet ONNX with DESIGN's metadata (random weights)."""
    import torch

    from edge_agent.preprocess import PreprocessSpec
    from workers.export import export_onnx
    from workers.models import create_model

    torch.manual_seed(0)
    export_onnx(create_model("liexnet", num_classes=len(labels)).eval(), path, PreprocessSpec(), labels, "liexnet",
                version, "test")
    return path


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "SHIPPED_DIR", tmp_path)
    tiny_onnx(tmp_path / registry.SHIPPED_ONNX, "liexnet-fer2013@1",
              ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"))
    return tmp_path


@pytest.fixture
def world(tenant, make_org, make_site, make_user, make_device, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    (tmp_path / "media" / "m").mkdir(parents=True)
    tiny_onnx(tmp_path / "media" / "m" / "model.onnx", "acme-itch@1")
    data = (tmp_path / "media" / "m" / "model.onnx").read_bytes()
    ds = Dataset.objects.create(organisation=tenant.org, name="itch")
    mv = ModelVersion.objects.create(organisation=tenant.org, version="acme-itch@1", name="acme-itch", number=1,
                                     labels=["negative", "neutral", "positive"], dataset=ds, onnx_file="m/model.onnx",
                                     sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    job = FineTuneJob.objects.create(organisation=tenant.org, dataset=ds, params={}, status="succeeded",
                                     model_version=mv)
    boards = [tenant.device] + [make_device(tenant.site, f"board-{i}")[0] for i in (2, 3)]
    Device.objects.filter(pk__in=[b.pk for b in boards]).update(online=True, last_seen_at=timezone.now())
    for b in boards:
        b.refresh_from_db()
    rival = make_org("rival")
    rival_site = make_site(rival, "depot")
    rival_device, rival_token = make_device(rival_site, "rival-board")
    users = {
        "researcher": make_user(tenant.org, Role.RESEARCHER, all_sites=True),
        "admin": make_user(tenant.org, Role.ADMIN),
        "officer": tenant.officer,
        "field_tech": make_user(tenant.org, Role.FIELD_TECH, all_sites=True),
        "rival": make_user(rival, Role.RESEARCHER, all_sites=True),
    }
    return dict(tenant=tenant, ds=ds, mv=mv, job=job, boards=boards, rival_token=rival_token, users=users)


def api(user):
    c = APIClient()
    c.force_login(user)
    return c


def heartbeat(token, version):
    c = APIClient()
    return c.post("/api/v1/heartbeat/", {"model_version": version}, format="json",
                  HTTP_AUTHORIZATION=f"Device {token}")


ENDPOINTS = [
    ("get", "/api/v1/datasets/{ds}/"), ("get", "/api/v1/training-jobs/{job}/"),
    ("post", "/api/v1/training-jobs/{job}/cancel/"), ("get", "/api/v1/model-versions/{mv}/"),
    ("post", "/api/v1/model-versions/{mv}/promote/"), ("get", "/api/v1/model-versions/{mv}/artifacts/onnx/"),
    ("get", "/research/datasets/{ds}/"), ("get", "/research/jobs/{job}/"), ("get", "/research/models/{mv}/"),
]
LISTS = ["/api/v1/datasets/", "/api/v1/subjects/", "/api/v1/samples/", "/api/v1/training-jobs/",
         "/api/v1/model-versions/", "/api/v1/deployments/", "/api/v1/dataset-imports/"]


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_only_researchers_and_admins_of_the_organisation_get_in(world, method, path):
    url = path.format(ds=world["ds"].id, job=world["job"].id, mv=world["mv"].id)
    for who, expected in (("researcher", {200}), ("admin", {200}), ("officer", {403}), ("field_tech", {403}),
                          ("rival", {404})):
        res = getattr(api(world["users"][who]), method)(url)
        assert res.status_code in expected, (who, url, res.status_code)
    assert APIClient().get(url).status_code in (302, 401, 403)


@pytest.mark.parametrize("url", LISTS)
def test_lists_are_forbidden_to_other_roles_and_empty_for_another_tenant(world, url):
    assert api(world["users"]["officer"]).get(url).status_code == 403
    assert api(world["users"]["researcher"]).get(url).status_code == 200
    rows = api(world["users"]["rival"]).get(url).json()["results"]
    assert all(r.get("organisation") is None for r in rows) and not any(r.get("version") == "acme-itch@1" for r in rows)


def test_another_tenant_cannot_deploy_or_start_jobs_on_our_things(world):
    rival = api(world["users"]["rival"])
    assert rival.post(f"/api/v1/model-versions/{world['mv'].id}/deploy/", {"site": world["tenant"].site.id}).status_code == 404
    res = rival.post("/api/v1/training-jobs/", {"dataset": world["ds"].id}, format="json")
    assert res.status_code == 404 and res.json() == {"dataset": ["unknown data set"]}  # as an unknown id
    for bad, status in ((None, 400), ("abc", 400)):  # missing or malformed: a 400, not a lookup
        assert rival.post("/api/v1/training-jobs/", {"dataset": bad}, format="json").status_code == status
    # and our researcher cannot deploy to their site
    from apps.sites.models import Site

    rival_site = Site.objects.get(slug="depot")
    res = api(world["users"]["researcher"]).post(f"/api/v1/model-versions/{world['mv'].id}/deploy/",
                                                 {"site": rival_site.id})
    assert res.status_code == 404 and "site" in res.json()


def test_canary_first_then_the_rest_then_rollback(world):
    tenant, mv, boards = world["tenant"], world["mv"], world["boards"]
    client = api(world["users"]["researcher"])
    canary = boards[1]
    res = client.post(f"/api/v1/model-versions/{mv.id}/deploy/", {"site": tenant.site.id, "canary": str(canary.pk)})
    assert res.status_code == 201, res.json()
    dep = Deployment.objects.get(pk=res.json()["id"])
    assert dep.status == "canary"
    desired = {d.name: d.desired_model_version for d in Device.objects.filter(site=tenant.site)}
    assert desired == {"board-1": "", "board-2": "acme-itch@1", "board-3": ""}
    # The canary's heartbeat answer carries the model.
    from apps.sites.enrollment import rotate_token

    tokens = {d.pk: rotate_token(d, None) for d in boards}
    answer = heartbeat(tokens[canary.pk], "liexnet-fer2013@1").json()
    assert answer["model"] == {"version": "acme-itch@1", "url": "/api/v1/device-models/acme-itch@1/",
                               "sha256": mv.sha256}
    # The canary downloads it with its token; the file matches the checksum.
    c = APIClient()
    res = c.get(answer["model"]["url"], HTTP_AUTHORIZATION=f"Device {tokens[canary.pk]}")
    assert res.status_code == 200
    assert hashlib.sha256(b"".join(res.streaming_content)).hexdigest() == mv.sha256
    # It reports the new version: the other boards are asked for it.
    heartbeat(tokens[canary.pk], "acme-itch@1")
    dep.refresh_from_db()
    assert dep.status == "rolling_out"
    assert set(Device.objects.filter(site=tenant.site).values_list("desired_model_version", flat=True)) == {"acme-itch@1"}
    for d in boards:
        heartbeat(tokens[d.pk], "acme-itch@1")
    dep.refresh_from_db()
    assert dep.status == "complete"
    # Roll back: every board is asked for what it ran before (the shipped model, unknown here → no change).
    res = client.post(f"/api/v1/deployments/{dep.id}/rollback/")
    assert res.status_code == 200 and res.json()["status"] == "rolled_back"
    assert set(Device.objects.filter(site=tenant.site).values_list("desired_model_version", flat=True)) != {"acme-itch@1"}


def test_rolling_back_after_a_superseded_deployment_leaves_no_board_wanting_the_version(world):
    """Deploy with canary A, deploy the same version again with canary B (the first is
    superseded), roll back: neither board still asks for the version."""
    tenant, mv, boards = world["tenant"], world["mv"], world["boards"]
    client = api(world["users"]["researcher"])
    first = client.post(f"/api/v1/model-versions/{mv.id}/deploy/", {"site": tenant.site.id, "canary": str(boards[1].pk)})
    second = client.post(f"/api/v1/model-versions/{mv.id}/deploy/", {"site": tenant.site.id, "canary": str(boards[2].pk)})
    assert Deployment.objects.get(pk=first.json()["id"]).status == "superseded"
    assert client.post(f"/api/v1/deployments/{second.json()['id']}/rollback/").status_code == 200
    after = set(Device.objects.filter(site=tenant.site).values_list("desired_model_version", flat=True))
    assert mv.version not in after  # each board is back to what it ran before either deployment
    devices = client.get("/api/v1/devices/", {"site": tenant.site.id}).json()["results"]
    assert all(d["desired_model_version"] != mv.version for d in devices)


def test_an_offline_canary_is_refused_with_the_reason(world):
    tenant, mv, boards = world["tenant"], world["mv"], world["boards"]
    Device.objects.filter(pk=boards[2].pk).update(online=False)
    res = api(world["users"]["researcher"]).post(f"/api/v1/model-versions/{mv.id}/deploy/",
                                                 {"site": tenant.site.id, "canary": str(boards[2].pk)})
    assert res.status_code == 400 and "offline" in str(res.json())
    assert not Deployment.objects.exists()


def test_rollback_returns_boards_to_the_shipped_model(world, shipped):
    tenant, mv = world["tenant"], world["mv"]
    client = api(world["users"]["researcher"])
    dep_id = client.post(f"/api/v1/model-versions/{mv.id}/deploy/", {"site": tenant.site.id}).json()["id"]
    res = client.post(f"/api/v1/deployments/{dep_id}/rollback/")
    assert res.status_code == 200
    shipped_mv = registry.shipped_version()
    assert shipped_mv.version == "liexnet-fer2013@1"
    assert set(Device.objects.filter(site=tenant.site).values_list("desired_model_version", flat=True)) == {
        "liexnet-fer2013@1"}
    assert set(Device.objects.filter(site=tenant.site).values_list("desired_model_sha256", flat=True)) == {
        shipped_mv.sha256}


def test_device_models_are_served_only_to_devices_that_may_have_them(world, shipped):
    tenant, mv = world["tenant"], world["mv"]
    c = APIClient()
    url = f"/api/v1/device-models/{mv.version}/"
    assert c.get(url).status_code == 401
    # Not deployed yet: not even our own device gets it.
    assert c.get(url, HTTP_AUTHORIZATION=f"Device {tenant.token}").status_code == 404
    api(world["users"]["researcher"]).post(f"/api/v1/model-versions/{mv.id}/deploy/", {"site": tenant.site.id})
    res = c.get(url, HTTP_AUTHORIZATION=f"Device {tenant.token}")
    assert res.status_code == 200 and res["X-Model-Sha256"] == mv.sha256
    # Another organisation's device never.
    assert c.get(url, HTTP_AUTHORIZATION=f"Device {world['rival_token']}").status_code == 404
    # The shipped model, to any device.
    shipped_file = (shipped / registry.SHIPPED_ONNX).read_bytes()
    for token in (tenant.token, world["rival_token"]):
        res = c.get("/api/v1/device-models/liexnet-fer2013@1/", HTTP_AUTHORIZATION=f"Device {token}")
        assert res.status_code == 200
        assert b"".join(res.streaming_content) == shipped_file
    assert c.get("/api/v1/device-models/nope@1/", HTTP_AUTHORIZATION=f"Device {tenant.token}").status_code == 404
    # A user session is not a device.
    assert api(world["users"]["researcher"]).get(url).status_code in (401, 403)


def test_promote_keeps_one_promoted_version_per_name(world):
    mv = world["mv"]
    mv2 = ModelVersion.objects.create(organisation=mv.organisation, version="acme-itch@2", name="acme-itch", number=2,
                                      onnx_file=mv.onnx_file, sha256=mv.sha256)
    client = api(world["users"]["researcher"])
    assert client.post(f"/api/v1/model-versions/{mv.id}/promote/").json()["status"] == "promoted"
    assert client.post(f"/api/v1/model-versions/{mv2.id}/promote/").json()["status"] == "promoted"
    mv.refresh_from_db()
    assert mv.status == "candidate"


def test_research_forms_refuse_other_roles_and_tenants(world):
    from django.test import Client

    posts = [f"/research/datasets/{world['ds'].id}/import/", f"/research/datasets/{world['ds'].id}/subjects/",
             f"/research/datasets/{world['ds'].id}/fine-tune/", f"/research/jobs/{world['job'].id}/cancel/",
             f"/research/models/{world['mv'].id}/promote/", f"/research/models/{world['mv'].id}/deploy/",
             "/research/datasets/new/"]
    for who, expected in (("officer", 403), ("field_tech", 403), ("rival", 404)):
        c = Client()
        c.force_login(world["users"][who])
        for url in posts:
            code = c.post(url, {"site": world["tenant"].site.id, "name": "x"}).status_code
            if url == "/research/datasets/new/" and who == "rival":
                continue  # creates the rival's own data set
            assert code == expected, (who, url, code)
    assert not Deployment.objects.exists()
    assert Client().get("/research/").status_code == 302  # to the login page


def test_a_board_enrolled_after_the_canary_joins_the_roll_out(world, make_device):
    tenant, mv, boards = world["tenant"], world["mv"], world["boards"]
    dep_id = api(world["users"]["researcher"]).post(
        f"/api/v1/model-versions/{mv.id}/deploy/", {"site": tenant.site.id, "canary": str(boards[0].pk)}).json()["id"]
    heartbeat(tenant.token, "acme-itch@1")  # the canary runs it; the rest are asked
    late, token = make_device(tenant.site, "board-late")
    answer = heartbeat(token, "liexnet-fer2013@1").json()
    assert answer["model"]["version"] == "acme-itch@1"
    dep = Deployment.objects.get(pk=dep_id)
    assert dep.status == "rolling_out" and any("board-late joined" in e["event"] for e in dep.events)


def test_a_rejected_version_is_inspectable_but_not_promoted_or_deployed_without_an_admin_override(world):
    from apps.accounts.models import AuditEvent

    tenant, mv = world["tenant"], world["mv"]
    ModelVersion.objects.filter(pk=mv.pk).update(
        status="rejected", rejected_reasons=["validation AUC 0.500 is at chance (0.5)"])
    researcher, admin = api(world["users"]["researcher"]), api(world["users"]["admin"])
    assert researcher.get(f"/api/v1/model-versions/{mv.id}/").json()["blockers"] == [
        "rejected by the quality gate: validation AUC 0.500 is at chance (0.5)"]
    res = researcher.post(f"/api/v1/model-versions/{mv.id}/promote/")
    assert res.status_code == 400 and "at chance" in res.json()["override"]
    res = researcher.post(f"/api/v1/model-versions/{mv.id}/promote/", {"override": "I know better"})
    assert res.status_code == 400 and "Only an administrator" in res.json()["override"]
    res = admin.post(f"/api/v1/model-versions/{mv.id}/deploy/", {"site": tenant.site.id})
    assert res.status_code == 400 and "at chance" in res.json()["site"]
    assert not Deployment.objects.exists() and not AuditEvent.objects.filter(action="model.override").exists()
    # An administrator overrides with a reason: recorded on the version and in the audit log.
    res = admin.post(f"/api/v1/model-versions/{mv.id}/deploy/", {"site": tenant.site.id, "override": "pilot on one line"})
    assert res.status_code == 201
    mv.refresh_from_db()
    assert "pilot on one line" in mv.override_note
    event = AuditEvent.objects.get(action="model.override")
    assert event.details["reason"] == "pilot on one line" and event.details["use"] == "deployed"


def test_the_fine_tune_form_keeps_what_was_typed_and_shows_errors_as_sentences(world):
    from django.test import Client

    c = Client()
    c.force_login(world["users"]["researcher"])
    url = f"/research/datasets/{world['ds'].id}/fine-tune/"
    res = c.post(url, {"epochs": "12", "lr": "10", "batch_size": "8", "sweep": "1, two, 0", "seed": "3",
                       "split": "kfold", "folds": "4", "select": "auc"}, follow=True)
    html = res.content.decode()
    assert res.status_code == 200 and not FineTuneJob.objects.exclude(pk=world["job"].pk).exists()
    messages = html.split('<ul class="messages">')[1].split("</ul>")[0]
    assert "ErrorDetail" not in messages and "{" not in messages and "[" not in messages
    assert "lr: Ensure this value is less than or equal to 1.0." in html
    assert "worker_weights, item 2: A valid number is required." in html
    assert "worker_weights, item 3: Ensure this value is greater than or equal to 0.1." in html
    import re

    for field, value in (("epochs", "12"), ("lr", "10"), ("batch_size", "8"), ("sweep", "1, two, 0"), ("seed", "3"),
                         ("folds", "4")):
        tag = re.search(rf'<input name="{field}"[^>]*>', html).group(0)
        assert f'value="{value}"' in tag, tag
    assert '<option value="kfold" selected>' in html and '<option value="auc" selected>' in html
    # the typed values are shown once: the next visit has the defaults again
    assert 'name="epochs" type="number" value="30"' in c.get(f"/research/datasets/{world['ds'].id}/").content.decode()


def test_an_accepted_import_stays_listed_after_a_refused_one(world):
    from apps.datasets.models import DatasetImport
    from django.test import Client

    ds = world["ds"]
    DatasetImport.objects.create(dataset=ds, filename="first.zip", status="accepted", accepted=300)
    DatasetImport.objects.create(dataset=ds, filename="first-again.zip", status="rejected",
                                 errors=[{"file": f"img{i}.jpg", "reason": "already in the data set"} for i in range(300)])
    c = Client()
    c.force_login(world["users"]["researcher"])
    html = c.get(f"/research/datasets/{ds.id}/").content.decode()
    assert 'id="accepted-imports"' in html and "first.zip" in html and ">300<" in html
    assert "300 problems in first-again.zip; nothing from it was stored" in html


def test_two_versions_compare_side_by_side_and_another_tenants_is_not_offered(world, shipped, make_org):
    from django.test import Client

    mv = world["mv"]
    ModelVersion.objects.filter(pk=mv.pk).update(
        metrics={"accuracy": 0.70, "auc": 0.80, "test_set": "24 images of test subjects S03, S07"},
        hyperparameters={"lr": 0.001, "chosen_w": 2.0})
    mv2 = ModelVersion.objects.create(
        organisation=mv.organisation, version="acme-itch@2", name="acme-itch", number=2, onnx_file=mv.onnx_file,
        sha256=mv.sha256, metrics={"accuracy": 0.75, "auc": 0.78, "test_set": "24 images of test subjects S03, S07"},
        hyperparameters={"lr": 0.003, "chosen_w": 2.0})
    rival_mv = ModelVersion.objects.create(organisation=make_org("other"), version="other-x@1", name="other-x",
                                           number=1, onnx_file=mv.onnx_file, sha256=mv.sha256)
    c = Client()
    c.force_login(world["users"]["researcher"])
    html = c.get(f"/research/models/compare/?v={mv.pk}&v={mv2.pk}").content.decode()
    assert "<th>Accuracy</th><td>0.700</td><td>0.750</td><td>+0.050</td>" in html
    assert "<th>AUC (macro)</th><td>0.800</td><td>0.780</td><td>-0.020</td>" in html
    assert '<tr class="differs"><th>lr</th>' in html and '<tr><th>chosen_w</th>' in html
    assert 'id="different-test-sets"' not in html
    # the shipped model was scored on FER2013: the page says they do not compare directly
    shipped_mv = registry.shipped_version()
    html = c.get(f"/research/models/compare/?v={mv.pk}&v={shipped_mv.pk}").content.decode()
    assert 'id="different-test-sets"' in html and "FER2013 PrivateTest" in html
    # another organisation's version reads as missing
    res = c.get(f"/research/models/compare/?v={mv.pk}&v={rival_mv.pk}", follow=True)
    assert res.status_code == 200 and "Tick two model versions" in res.content.decode()
    assert "other-x@1" not in res.content.decode()


def test_a_withdrawal_marks_derived_versions_and_rolls_back_their_deployments(world):
    from apps.datasets.models import Subject
    from apps.datasets.services import withdraw_consent

    tenant, mv, job, boards = world["tenant"], world["mv"], world["job"], world["boards"]
    subject = Subject.objects.create(dataset=world["ds"], code="S01", is_worker=True,
                                     consent_given_at=timezone.now(), consent_scope="training")
    FineTuneJob.objects.filter(pk=job.pk).update(results={"splits": [
        {"fold": 1, "train_subjects": ["S01", "S02"], "val_subjects": ["S03"], "test_subjects": ["S04"]}]})
    child = ModelVersion.objects.create(organisation=tenant.org, version="acme-itch@2", name="acme-itch", number=2,
                                        base=mv, onnx_file=mv.onnx_file, sha256=mv.sha256)
    researcher = world["users"]["researcher"]
    dep_id = api(researcher).post(f"/api/v1/model-versions/{mv.id}/deploy/",
                                  {"site": tenant.site.id, "canary": str(boards[0].pk)}).json()["id"]
    heartbeat(tenant.token, "acme-itch@1")  # the canary runs it: rolling out to the rest
    done = withdraw_consent(subject, researcher)
    mv.refresh_from_db()
    child.refresh_from_db()
    assert mv.withdrawn_subjects == ["S01"] and child.withdrawn_subjects == ["S01"]  # and what was made from it
    dep = Deployment.objects.get(pk=dep_id)
    assert dep.status == "rolled_back" and "withdrew consent" in dep.events[-1]["event"]
    assert any("rolled back" in m for m in done["marked"])
    boards[0].refresh_from_db()
    assert boards[0].desired_model_version != "acme-itch@1"  # asked for what it ran before


def test_a_rejected_version_promoted_by_override_stays_rejected_when_superseded(world):
    mv = world["mv"]
    ModelVersion.objects.filter(pk=mv.pk).update(status="rejected", rejected_reasons=["validation AUC 0.500 is at chance (0.5)"])
    admin = api(world["users"]["admin"])
    assert admin.post(f"/api/v1/model-versions/{mv.id}/promote/", {"override": "pilot"}).json()["status"] == "promoted"
    other = ModelVersion.objects.create(organisation=mv.organisation, version="acme-itch@2", name="acme-itch",
                                        number=2, onnx_file=mv.onnx_file, sha256=mv.sha256)
    assert admin.post(f"/api/v1/model-versions/{other.id}/promote/").json()["status"] == "promoted"
    mv.refresh_from_db()
    assert mv.status == "rejected"
