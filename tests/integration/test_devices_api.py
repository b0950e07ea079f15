"""Enrollment codes, device tokens and heartbeats through the API."""
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import AuditEvent, Role
from apps.accounts.secrets import hash_secret
from apps.sites.models import Camera, Device, EnrollmentCode
from apps.sites.tasks import mark_offline_devices

pytestmark = pytest.mark.django_db


@pytest.fixture
def tech(tenant, make_user):
    c = APIClient()
    c.force_authenticate(make_user(tenant.org, Role.FIELD_TECH, sites=[tenant.site], password=None))
    return c


def enroll(code, **extra):
    return APIClient().post("/api/v1/enroll/", {"code": code, **extra}, format="json")


def device_client(token):
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Device {token}")
    return c


def test_code_enrolls_once_and_token_is_stored_hashed(tenant, tech):
    created = tech.post(f"/api/v1/sites/{tenant.site.id}/enrollment-codes/", {}, format="json")
    assert created.status_code == 201
    code = created.json()["code"]
    assert not EnrollmentCode.objects.filter(code_hash=code).exists()  # only the hash is kept
    res = enroll(code.lower().replace("-", ""), name="line-3")  # typed loosely
    assert res.status_code == 201, res.content
    body = res.json()
    device = Device.objects.get(pk=body["device_id"])
    assert device.name == "line-3" and device.site == tenant.site
    assert device.token_hash == hash_secret(body["token"]) and body["token"] not in device.token_hash
    again = enroll(code)
    assert again.status_code == 403 and again.json()["detail"] == "enrollment code already used"
    assert AuditEvent.objects.filter(action="device.enroll").count() == 1


def test_expired_and_unknown_codes_are_refused(tenant, tech):
    code = tech.post(f"/api/v1/sites/{tenant.site.id}/enrollment-codes/", {}, format="json").json()["code"]
    EnrollmentCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert enroll(code).json()["detail"] == "enrollment code expired"
    assert enroll("AAAA-BBBB-CCCC").json()["detail"] == "enrollment code unknown"
    assert Device.objects.count() == 1  # only the fixture's


def test_heartbeat_records_health_and_announces_cameras(tenant):
    c = device_client(tenant.token)
    res = c.post("/api/v1/heartbeat/", {
        "uptime_s": 12.5, "model_version": "liexnet-fer2013@1", "backend": "onnxruntime:CPUExecutionProvider",
        "queue_depth": 4, "dropped": 1,
        "cameras": {"cam0": {"status": "ok", "fps": 29.5}, "dock": {"status": "error", "error": "cannot open", "fps": 0}},
    }, format="json")
    assert res.status_code == 200, res.content
    assert res.json() == {"config": {}, "model": None}
    device = Device.objects.get(pk=tenant.device.pk)
    assert device.online and device.model_version == "liexnet-fer2013@1" and device.health["queue_depth"] == 4
    assert Camera.objects.get(device=device, name="dock").status == "error"
    # The server's wishes come back in the answer.
    Device.objects.filter(pk=device.pk).update(desired_config={"detect_every": 4}, desired_model_version="v2",
                                               desired_model_url="/api/v1/device-models/v2/", desired_model_sha256="ab" * 32)
    answer = c.post("/api/v1/heartbeat/", {"model_version": "liexnet-fer2013@1"}, format="json").json()
    assert answer["config"] == {"detect_every": 4} and answer["model"]["version"] == "v2"
    bad = c.post("/api/v1/heartbeat/", {"queue_depth": -1}, format="json")
    assert bad.status_code == 400 and "queue_depth" in bad.json()


def test_silent_devices_go_offline(tenant):
    device_client(tenant.token).post("/api/v1/heartbeat/", {}, format="json")
    Device.objects.update(last_seen_at=timezone.now() - timedelta(minutes=10))
    assert mark_offline_devices() == 1
    assert not Device.objects.get(pk=tenant.device.pk).online


def test_rotate_and_revoke(tenant, tech):
    new = tech.post(f"/api/v1/devices/{tenant.device.id}/rotate-token/").json()["token"]
    assert device_client(tenant.token).post("/api/v1/heartbeat/", {}, format="json").status_code == 401
    assert device_client(new).post("/api/v1/heartbeat/", {}, format="json").status_code == 200
    assert tech.post(f"/api/v1/devices/{tenant.device.id}/revoke/").json()["status"] == "revoked"
    assert device_client(new).post("/api/v1/heartbeat/", {}, format="json").status_code == 401
    assert set(AuditEvent.objects.values_list("action", flat=True)) >= {"device.rotate_token", "device.revoke"}


def test_desired_config_is_sent_in_heartbeat_answers(tenant, tech):
    url = f"/api/v1/devices/{tenant.device.id}/"
    assert tech.patch(url, {"desired_config": [1, 2]}, format="json").status_code == 400
    assert tech.patch(url, {"desired_config": {"detect_every": 3}}, format="json").status_code == 200
    answer = device_client(tenant.token).post("/api/v1/heartbeat/", {}, format="json").json()
    assert answer["config"] == {"detect_every": 3}


@pytest.mark.parametrize("hardware", [{"model": "Jetson\x00"}, {"\x00": 1}, {"blob": "x" * 257}, {"k" * 65: 1},
                                      {f"k{i}": i for i in range(33)}, {"nested": {"model": "x"}}, {"list": [1]}])
def test_hardware_outside_its_documented_shape_is_a_400_and_the_code_stays_usable(tenant, tech, hardware):
    code = tech.post(f"/api/v1/sites/{tenant.site.id}/enrollment-codes/", {}, format="json").json()["code"]
    res = enroll(code, hardware=hardware)
    assert res.status_code == 400 and "hardware" in res.json()
    assert enroll(code, hardware={"model": "Jetson Orin Nano"}).status_code == 201


@pytest.mark.parametrize("camera", ["cam\x00", "cam\x1b[2J", "\ud800"])
def test_camera_names_that_are_not_text_are_a_400(tenant, camera):
    body = json.dumps({"cameras": {camera: {"status": "ok"}}})  # a lone surrogate travels as its \ud800 escape
    res = device_client(tenant.token).post("/api/v1/heartbeat/", body, content_type="application/json")
    assert res.status_code == 400 and "cameras" in res.json()
