"""A heartbeat turns into device health, and its answer carries what the server wants."""
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from .models import Camera, Device


class CameraHealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "error", "starting", "stopped", "ended"], default="ok")
    fps = serializers.FloatField(min_value=0, required=False, allow_null=True)
    error = serializers.CharField(required=False, allow_blank=True, max_length=300)
    dropped_frames = serializers.IntegerField(min_value=0, required=False)
    # Not kept: a camera's face count ("faces", which agents send) is a head count of the
    # people in view every 30 s, outside the telemetry's differential privacy.


class HeartbeatSerializer(serializers.Serializer):
    uptime_s = serializers.FloatField(min_value=0, required=False)
    model_version = serializers.CharField(required=False, allow_blank=True, max_length=100)
    model_error = serializers.CharField(required=False, allow_blank=True, max_length=500)
    backend = serializers.CharField(required=False, allow_blank=True, max_length=100)
    queue_depth = serializers.IntegerField(min_value=0, required=False)
    dropped = serializers.IntegerField(min_value=0, required=False, help_text="events the outbox dropped (disk budget)")
    rejected = serializers.IntegerField(min_value=0, required=False, help_text="events the server refused")
    set_aside = serializers.IntegerField(min_value=0, required=False,
                                         help_text="events kept on the board because the server failed on them")
    publish_error = serializers.CharField(required=False, allow_blank=True, max_length=500)
    config_error = serializers.CharField(required=False, allow_blank=True, max_length=500)
    cameras = serializers.DictField(child=CameraHealthSerializer(), required=False)

    def validate_cameras(self, value):
        if len(value) > 64:
            raise serializers.ValidationError("at most 64 cameras per device")
        for name in value:
            if not name or len(name) > 64:
                raise serializers.ValidationError(f"camera name {name[:80]!r} must be 1-64 characters")
            if not name.isprintable():  # NUL and other control characters cannot be stored
                raise serializers.ValidationError(f"camera name {name[:80]!r} must be printable text")
        return value


def record_heartbeat(device: Device, report: dict) -> dict:
    """Stores the report and returns the answer for the agent."""
    now = timezone.now()
    with transaction.atomic():
        if device.last_seen_at and now - device.last_seen_at > settings.AFFECTWATCH["OFFLINE_AFTER"]:
            device.offline_from, device.back_online_at = device.last_seen_at, now
        device.last_seen_at = now
        device.online = True
        device.health = {**report, "received_at": now.isoformat()}
        if "model_version" in report:
            device.model_version = report["model_version"]
        device.save(update_fields=["last_seen_at", "online", "health", "model_version", "offline_from", "back_online_at"])
        for name, cam in report.get("cameras", {}).items():
            Camera.objects.update_or_create(
                device=device,
                name=name,
                defaults={"status": cam.get("status", "ok"), "fps": cam.get("fps"), "error": cam.get("error", "")},
            )
    return desired_state(device)


def desired_state(device: Device) -> dict:
    model = None
    if device.desired_model_version and device.desired_model_version != device.model_version:
        model = {
            "version": device.desired_model_version,
            "url": device.desired_model_url,
            "sha256": device.desired_model_sha256,
        }
    return {"config": device.desired_config or {}, "model": model}
