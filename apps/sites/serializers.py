import json

from rest_framework import serializers

from apps.accounts.access import role_of
from apps.accounts.models import Role
from apps.accounts.scope import ScopedModelSerializer, ScopedSerializer

from .models import Camera, Device, EnrollmentCode, Site, Zone


class ZoneSerializer(ScopedModelSerializer):
    class Meta:
        model = Zone
        fields = ["id", "name", "site"]
        read_only_fields = ["site"]


class SiteSerializer(ScopedModelSerializer):
    zones = ZoneSerializer(many=True, read_only=True)

    class Meta:
        model = Site
        fields = ["id", "name", "slug", "timezone", "zones"]


class CameraSerializer(ScopedModelSerializer):
    class Meta:
        model = Camera
        fields = ["id", "name", "status", "fps", "error"]


#: Who sees a board's health report (queue depth, frame rates): field techs and admins.
HEALTH_ROLES = (Role.FIELD_TECH, Role.ADMIN)


class DeviceSerializer(ScopedModelSerializer):
    cameras = CameraSerializer(many=True, read_only=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = Device
        fields = [
            "id", "name", "site", "zone", "simulated", "status", "online", "last_seen_at", "enrolled_at",
            "revoked_at", "model_version", "desired_model_version", "desired_config", "health", "cameras",
        ]
        read_only_fields = [f for f in fields if f not in ("name", "zone", "desired_config")]

    def validate_desired_config(self, value):
        # The agent checks each key itself and reports what it ignored; here only the shape.
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be an object of agent settings, e.g. {\"detect_every\": 4}")
        if len(str(value)) > 10_000:
            raise serializers.ValidationError("at most 10,000 characters")
        return value

    def to_representation(self, device):
        data = super().to_representation(device)
        request = self.context.get("request")
        if request is not None and role_of(request.user) not in HEALTH_ROLES:
            # Queue depth and frame rates follow how many faces a board sees: the people
            # who install boards need them, the people who read the dashboards do not.
            data.pop("health", None)
            for camera in data.get("cameras", []):
                camera.pop("fps", None)
        return data

    def get_status(self, device) -> str:
        if device.revoked_at:
            return "revoked"
        return "online" if device.online else "offline"


class EnrollRequestSerializer(ScopedSerializer):
    code = serializers.CharField(max_length=32)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    hardware = serializers.DictField(required=False)

    def validate_hardware(self, value):
        text = json.dumps(value)
        if len(text) > 4096:
            raise serializers.ValidationError("at most 4,096 characters of JSON")
        if "\\u0000" in text:  # PostgreSQL's jsonb cannot hold NUL
            raise serializers.ValidationError("must not contain NUL characters")
        return value


class EnrollmentCodeSerializer(ScopedModelSerializer):
    state = serializers.CharField(read_only=True)

    class Meta:
        model = EnrollmentCode
        fields = ["id", "site", "zone", "hint", "created_at", "expires_at", "used_at", "state", "device"]
        read_only_fields = fields
