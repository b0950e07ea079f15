from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import (action, api_view, authentication_classes, parser_classes, permission_classes,
                                       throttle_classes)
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle

from apps.accounts.access import visible_sites
from apps.accounts.models import ApiScope, Role
from apps.accounts.permissions import roles_or_scope

from . import enrollment
from .authentication import DEVICE_PARSERS, DeviceTokenAuthentication, IsDevice
from .heartbeat import HeartbeatSerializer, record_heartbeat
from .models import Device, EnrollmentCode, Zone
from .serializers import (
    DeviceSerializer,
    EnrollmentCodeSerializer,
    EnrollRequestSerializer,
    SiteSerializer,
    ZoneSerializer,
)

ReadSites = roles_or_scope(Role.SAFETY_OFFICER, Role.FIELD_TECH, Role.RESEARCHER, scope=ApiScope.SITES_READ)
ManageDevices = roles_or_scope(Role.FIELD_TECH, scope=ApiScope.DEVICES_WRITE)


class EnrollThrottle(AnonRateThrottle):
    rate = "30/minute"


@extend_schema(request=EnrollRequestSerializer, responses={201: OpenApiResponse(description="device id and token"),
                                                           403: OpenApiResponse(description="code unknown, used or expired")})
@api_view(["POST"])
@parser_classes(DEVICE_PARSERS)
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([EnrollThrottle])
def enroll(request):
    """Redeem a one-time enrollment code for a device id and token (the code is the credential)."""
    body = EnrollRequestSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    try:
        device, token = enrollment.redeem(
            body.validated_data["code"], body.validated_data.get("name", ""), body.validated_data.get("hardware")
        )
    except enrollment.EnrollmentError as exc:  # the code is the credential: refused, not malformed
        return Response({"detail": str(exc)}, status=status.HTTP_403_FORBIDDEN)
    return Response(
        {
            "device_id": str(device.id),
            "token": token,
            "site": device.site.slug,
            "ingest_url": "/api/v1/ingest/",
            "heartbeat_url": "/api/v1/heartbeat/",
            "heartbeat_interval_s": settings.AFFECTWATCH["HEARTBEAT_INTERVAL_S"],
        },
        status=status.HTTP_201_CREATED,
    )


@extend_schema(request=HeartbeatSerializer, responses={200: inline_serializer("HeartbeatAnswer", {
    "config": serializers.DictField(), "model": serializers.DictField(allow_null=True)})})
@api_view(["POST"])
@parser_classes(DEVICE_PARSERS)
@authentication_classes([DeviceTokenAuthentication])
@permission_classes([IsDevice])
def heartbeat(request):
    """An agent's health report; the answer holds the desired config and model."""
    body = HeartbeatSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    return Response(record_heartbeat(request.auth, body.validated_data))


class SiteViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = SiteSerializer
    permission_classes = [ReadSites]

    def get_queryset(self):
        return visible_sites(self.request.user).prefetch_related("zones")

    @extend_schema(request=inline_serializer("EnrollmentCodeRequest", {
        "zone": serializers.IntegerField(required=False, allow_null=True, help_text="a zone of this site")}),
        responses={201: inline_serializer("NewEnrollmentCode", {
            "id": serializers.IntegerField(), "site": serializers.IntegerField(),
            "zone": serializers.IntegerField(allow_null=True), "hint": serializers.CharField(),
            "created_at": serializers.DateTimeField(), "expires_at": serializers.DateTimeField(),
            "code": serializers.CharField(help_text="the one-time code, shown only in this answer")})})
    @action(detail=True, methods=["post"], permission_classes=[ManageDevices], url_path="enrollment-codes")
    def enrollment_codes(self, request, pk=None):
        """Create a one-time enrollment code for this site. The code is shown once."""
        site = self.get_object()
        zone = None
        if request.data.get("zone") not in (None, ""):
            zone_id = str(request.data["zone"])
            ok = zone_id.isascii() and zone_id.isdigit() and len(zone_id) <= 18  # not '²', not 5,000 digits
            zone = Zone.objects.filter(pk=int(zone_id), site=site).first() if ok else None
            if zone is None:  # malformed, unknown, or another site's: one answer
                raise ValidationError({"zone": f"no zone {zone_id[:40]!r} at this site"})
        code_obj, code = enrollment.create_enrollment_code(site, request.user, zone=zone, request=request)
        data = EnrollmentCodeSerializer(code_obj).data
        data["code"] = code
        return Response(data, status=status.HTTP_201_CREATED)


class DeviceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet):
    serializer_class = DeviceSerializer
    filterset_fields = ["site", "zone", "online", "simulated"]

    def get_permissions(self):
        if self.action in ("list", "retrieve"):
            return [ReadSites()]
        return [ManageDevices()]

    def get_queryset(self):
        return Device.objects.filter(site__in=visible_sites(self.request.user)).prefetch_related("cameras")

    def perform_update(self, serializer):
        zone = serializer.validated_data.get("zone")
        if zone is not None and zone.site_id != serializer.instance.site_id:
            raise ValidationError({"zone": "zone belongs to another site"})
        serializer.save()

    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        device = self.get_object()
        enrollment.revoke(device, request)
        return Response(DeviceSerializer(device).data)

    @action(detail=True, methods=["post"], url_path="rotate-token")
    def rotate_token(self, request, pk=None):
        device = self.get_object()
        token = enrollment.rotate_token(device, request)
        return Response({"device_id": str(device.id), "token": token})


class EnrollmentCodeViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = EnrollmentCodeSerializer
    permission_classes = [ManageDevices]

    def get_queryset(self):
        return EnrollmentCode.objects.filter(site__in=visible_sites(self.request.user))


class ZoneViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ZoneSerializer
    permission_classes = [ReadSites]
    filterset_fields = ["site"]

    def get_queryset(self):
        return Zone.objects.filter(site__in=visible_sites(self.request.user))
