from drf_spectacular.utils import extend_schema_field
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


HARDWARE_SCHEMA = {  # OpenAPI 3.0: null through `nullable`; no `propertyNames`, so the names' rule is in words
    "type": "object", "maxProperties": 32,
    "additionalProperties": {"oneOf": [{"type": "string", "maxLength": 256, "pattern": "^[^\\u0000]*$", "nullable": True},
                                       {"type": "number"}, {"type": "boolean"}]},
    "description": "what the board says of itself (`edge_agent.client.hardware_info`): up to 32 names of up to 64 "
                   "characters, each a number, a boolean, null or text of up to 256 characters (no NUL: PostgreSQL's "
                   "jsonb cannot hold it)",
}


@extend_schema_field(HARDWARE_SCHEMA)
class HardwareField(serializers.DictField):
    """A flat object of short scalars, as HARDWARE_SCHEMA says; anything else is a 400."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > 32:
            raise serializers.ValidationError("at most 32 entries")
        for key, item in value.items():
            if len(key) > 64 or "\x00" in key:
                raise serializers.ValidationError(f"entry names are up to 64 characters without NUL: {key[:64]!r}")
            if isinstance(item, str):
                if len(item) > 256 or "\x00" in item:
                    raise serializers.ValidationError(f"{key[:64]}: text is up to 256 characters without NUL")
            elif item is not None and not isinstance(item, (int, float, bool)):
                raise serializers.ValidationError(f"{key[:64]}: a number, a boolean, null or text, not a list or object")
        return value


class EnrollRequestSerializer(ScopedSerializer):
    code = serializers.CharField(max_length=32)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    hardware = HardwareField(required=False)


class EnrollmentCodeSerializer(ScopedModelSerializer):
    state = serializers.CharField(read_only=True)

    class Meta:
        model = EnrollmentCode
        fields = ["id", "site", "zone", "hint", "created_at", "expires_at", "used_at", "state", "device"]
        read_only_fields = fields
