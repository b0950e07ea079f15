from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.response import Response

from apps.accounts.access import visible_sites
from apps.accounts.models import ApiScope, Role
from apps.accounts.permissions import roles_or_scope
from apps.sites.authentication import DeviceTokenAuthentication, IsDevice
from apps.sites.models import Device, Zone

from .ingest import BatchError, ingest as store_batch
from .live import publish_minutes
from .trends import BUCKETS, default_bucket, trend

class EventSchema(serializers.Serializer):
    ts = serializers.DateTimeField()
    camera = serializers.CharField()
    track = serializers.CharField()
    label = serializers.ChoiceField(choices=["negative", "neutral", "positive"])
    confidence = serializers.FloatField(min_value=0, max_value=1)


class IngestBatchSchema(serializers.Serializer):
    batch_id = serializers.UUIDField()
    events = EventSchema(many=True)


class RejectedSchema(serializers.Serializer):
    index = serializers.IntegerField()
    reason = serializers.CharField()


class IngestAnswerSchema(serializers.Serializer):
    batch_id = serializers.UUIDField()
    accepted = serializers.IntegerField()
    rejected = RejectedSchema(many=True)
    duplicate = serializers.BooleanField()


class BucketSchema(serializers.Serializer):
    t = serializers.DateTimeField()
    negative = serializers.IntegerField(allow_null=True)
    neutral = serializers.IntegerField(allow_null=True)
    positive = serializers.IntegerField(allow_null=True)
    tracks = serializers.IntegerField(allow_null=True)
    suppressed = serializers.BooleanField()


class TrendSchema(serializers.Serializer):
    site = serializers.IntegerField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    bucket = serializers.CharField()
    k_anonymity = serializers.IntegerField()
    series = BucketSchema(many=True)


class TrendQuery(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    hours = serializers.FloatField(required=False, min_value=0.01, max_value=24 * 366)
    bucket = serializers.ChoiceField(choices=list(BUCKETS), required=False)
    zone = serializers.IntegerField(required=False)
    device = serializers.UUIDField(required=False)


ReadTelemetry = roles_or_scope(Role.SAFETY_OFFICER, Role.RESEARCHER, scope=ApiScope.TELEMETRY_READ)


def _rate_limited(device) -> int:
    """Seconds to wait when the device has used its per-minute budget, else 0."""
    limit = settings.AFFECTWATCH["INGEST_RATE_PER_MINUTE"]
    window = int(timezone.now().timestamp() // 60)
    key = f"ingest-rate:{device.pk}:{window}"
    cache.add(key, 0, timeout=120)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=120)
        count = 1
    return 60 - int(timezone.now().timestamp() % 60) if count > limit else 0


@extend_schema(request=IngestBatchSchema, responses={200: IngestAnswerSchema, 400: OpenApiResponse(description="malformed batch"),
                                                     413: OpenApiResponse(description="body too large"),
                                                     429: OpenApiResponse(description="rate limit; see Retry-After")})
@api_view(["POST"])
@authentication_classes([DeviceTokenAuthentication])
@permission_classes([IsDevice])
def ingest(request):
    """Store a batch of label events from an agent. Idempotent per (device, batch_id)."""
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > settings.AFFECTWATCH["INGEST_MAX_BYTES"]:
        return Response(
            {"detail": f"body of {length} bytes exceeds the {settings.AFFECTWATCH['INGEST_MAX_BYTES']} byte limit"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    device = request.auth
    wait = _rate_limited(device)
    if wait:
        return Response({"detail": "rate limit exceeded"}, status=429, headers={"Retry-After": str(wait)})
    try:
        answer, minutes = store_batch(device, request.data)
    except BatchError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    transaction.on_commit(lambda: publish_minutes(device.site, minutes))
    return Response(answer)


@extend_schema(parameters=[TrendQuery], responses={200: TrendSchema})
@api_view(["GET"])
@permission_classes([ReadTelemetry])
def site_trend(request, site_id):
    """Per-bucket negative / neutral / positive counts for a site (k-anonymised)."""
    site = get_object_or_404(visible_sites(request.user), pk=site_id)
    query = TrendQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    q = query.validated_data
    until = q.get("until") or timezone.now()
    since = q.get("since") or until - timedelta(hours=q.get("hours", 3))
    if since >= until:
        return Response({"since": "must be before until"}, status=400)
    bucket = q.get("bucket") or default_bucket(until - since)
    zone = get_object_or_404(Zone, pk=q["zone"], site=site) if "zone" in q else None
    device = get_object_or_404(Device, pk=q["device"], site=site) if "device" in q else None
    return Response(
        {
            "site": site.id,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "bucket": bucket,
            "k_anonymity": settings.AFFECTWATCH["K_ANONYMITY"],
            "series": trend([site], since, until, bucket, zone=zone, device=device),
        }
    )
