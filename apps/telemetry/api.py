from datetime import datetime, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.decorators import (api_view, authentication_classes, parser_classes, permission_classes,
                                       renderer_classes)
from rest_framework.exceptions import AuthenticationFailed, ValidationError
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.response import Response

from apps.accounts.access import audit, visible_sites
from apps.accounts.models import ApiScope, Role
from apps.accounts.permissions import roles_or_scope
from apps.accounts.scope import ScopedModelSerializer
from apps.sites.authentication import DEVICE_PARSERS, DeviceTokenAuthentication, IsDevice
from apps.sites.models import Device, Zone

from . import metrics
from .ingest import BatchError, DeviceBusy, DeviceRemoved, ingest as store_batch
from .models import MinuteRollup
from .renderers import CSVRenderer, JSONRenderer
from .trends import BUCKETS, default_bucket, k_anonymity, trend, trend_json, weekly_heatmap, zone_breakdown


class RangeQuery(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    hours = serializers.FloatField(required=False, min_value=0.01, max_value=24 * 366)
    bucket = serializers.ChoiceField(choices=list(BUCKETS), required=False)
    zone = serializers.IntegerField(required=False)
    device = serializers.UUIDField(required=False)
    compare = serializers.ChoiceField(
        choices=["last_year"], required=False,
        help_text="trend only, hour or day buckets: add the same period 52 weeks earlier (weekdays line up) as "
                  "`comparison`")

    def validate(self, data):
        for name in ("since", "until"):
            if name in data and data[name] < EARLIEST:
                raise ValidationError({name: f"must be after {EARLIEST:%Y-%m-%d}"})
        return data


@extend_schema_field({"oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
                      "description": "ISO 8601 with a UTC offset, or Unix seconds"})
class TimestampField(serializers.Field):
    """Documentation only: the ingest view parses events itself (`ingest.EventValidator`)."""


@extend_schema_field({"oneOf": [{"type": "string", "minLength": 1, "maxLength": 64}, {"type": "integer"}],
                      "description": "the track id, unique per camera: 1-64 printable characters or an integer"})
class TrackField(serializers.Field):
    """Documentation only, like TimestampField."""


class EventSchema(serializers.Serializer):
    ts = TimestampField()
    camera = serializers.CharField()
    track = TrackField()
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


class SeriesSchema(serializers.Serializer):
    t = serializers.ListField(child=serializers.IntegerField(), help_text="bucket starts, Unix seconds")
    negative = serializers.ListField(child=serializers.IntegerField(allow_null=True))
    neutral = serializers.ListField(child=serializers.IntegerField(allow_null=True))
    positive = serializers.ListField(child=serializers.IntegerField(allow_null=True))
    tracks = serializers.ListField(child=serializers.IntegerField(allow_null=True))
    suppressed = serializers.ListField(child=serializers.BooleanField())


class ComparisonSchema(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    series = SeriesSchema()
    aligned_t = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="each comparison bucket's start moved 52 weeks on in the site's local calendar (Unix seconds): "
                  "the trend bucket it sits beside, across daylight-saving changes")


class TrendSchema(serializers.Serializer):
    site = serializers.IntegerField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    bucket = serializers.CharField()
    k_anonymity = serializers.IntegerField()
    series = SeriesSchema()
    comparison = ComparisonSchema(required=False, help_text="with ?compare=last_year")


#: "Same period last year": 52 weeks back, so Mondays line up with Mondays.
LAST_YEAR = timedelta(weeks=52)
#: The earliest time a range may name (older would overflow date arithmetic; nothing is there).
EARLIEST = datetime(2000, 1, 1, tzinfo=dt_timezone.utc)
#: The longest range a minute-bucket trend may ask for (43,200 buckets).
MAX_MINUTE_SPAN = timedelta(days=30)

ReadTelemetry = roles_or_scope(Role.SAFETY_OFFICER, Role.RESEARCHER, scope=ApiScope.TELEMETRY_READ)


def _rate_limited(device, events: int) -> int:
    """Seconds to wait when the device has used its per-minute budget, else 0. The budget
    counts what a batch costs the server: 1 per request plus 1 per 100 events, so a
    board that gathers its events into one request a second (the agent's default) uses
    a fraction of it at any real event rate, and a flood of tiny requests does not."""
    limit = settings.AFFECTWATCH["INGEST_RATE_PER_MINUTE"]
    cost = 1 + events // 100
    window = int(timezone.now().timestamp() // 60)
    key = f"ingest-rate:{device.pk}:{window}"
    cache.add(key, 0, timeout=120)
    try:
        spent = cache.incr(key, cost)
    except ValueError:  # evicted between add and incr
        cache.set(key, cost, timeout=120)
        spent = cost
    return 60 - int(timezone.now().timestamp() % 60) if spent > limit else 0


@extend_schema(request=IngestBatchSchema, responses={200: IngestAnswerSchema, 400: OpenApiResponse(description="malformed batch"),
                                                     413: OpenApiResponse(description="body too large"),
                                                     401: OpenApiResponse(description="unknown, revoked or removed device"),
                                                     429: OpenApiResponse(description="rate limit, or the board's lock is held; see Retry-After")})
@api_view(["POST"])
@parser_classes(DEVICE_PARSERS)
@authentication_classes([DeviceTokenAuthentication])
@permission_classes([IsDevice])
def ingest(request):
    """Store a batch of label events from an agent. Idempotent per (device, batch_id).
    The body may be gzip (`Content-Encoding: gzip`); its size limits are checked before
    this view runs (affectwatch/bodylimit.py)."""
    device = request.auth
    events = request.data.get("events") if isinstance(request.data, dict) else None
    wait = _rate_limited(device, len(events) if isinstance(events, list) else 0)
    if wait:
        metrics.BATCHES.labels("rate_limited").inc()
        return Response({"detail": "rate limit exceeded"}, status=429, headers={"Retry-After": str(wait)})
    try:
        answer, _ = store_batch(device, request.data)
    except BatchError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    except DeviceRemoved as exc:
        raise AuthenticationFailed(str(exc)) from None
    except DeviceBusy as exc:
        return Response({"detail": str(exc)}, status=429, headers={"Retry-After": "5"})
    return Response(answer)


def _range(request, default_hours=3):
    query = RangeQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    q = query.validated_data
    until = q.get("until") or timezone.now()
    since = q.get("since") or until - timedelta(hours=q.get("hours", default_hours))
    if since >= until:
        raise ValidationError({"since": "must be before until"})
    return since, until, q


def _site(request, site_id):
    return get_object_or_404(visible_sites(request.user), pk=site_id)


def _audit_export(request, site, what):
    if request.accepted_renderer.format == "csv":
        audit(request, "data.export", target=site, organisation=site.organisation, what=what,
              query=dict(request.query_params.items()))


TELEMETRY_RENDERERS = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]


@extend_schema(parameters=[RangeQuery], responses={200: TrendSchema})
@api_view(["GET"])
@permission_classes([ReadTelemetry])
@renderer_classes(TELEMETRY_RENDERERS)
def site_trend(request, site_id):
    """Per-bucket negative / neutral / positive counts for a site, zone or device
    (differentially private; thin buckets suppressed).
    `?format=csv` gives the same as CSV."""
    site = _site(request, site_id)
    since, until, q = _range(request)
    bucket = q.get("bucket") or default_bucket(until - since)
    if bucket == "minute" and until - since > MAX_MINUTE_SPAN:
        raise ValidationError({"bucket": f"minute buckets cover at most {MAX_MINUTE_SPAN.days} days; use hour or day"})
    zone = get_object_or_404(Zone, pk=q["zone"], site=site) if "zone" in q else None
    device = get_object_or_404(Device, pk=q["device"], site=site) if "device" in q else None
    _audit_export(request, site, "trend")
    # JSON gets the text the database built; the browsable API and CSV need the columns.
    series = trend_json if request.accepted_renderer.format == "json" else trend
    body = {
        "site": site.id,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "bucket": bucket,
        "k_anonymity": k_anonymity(),
        "series": series(site, since, until, bucket, zone=zone, device=device),
    }
    if q.get("compare") == "last_year":
        if bucket == "minute":
            raise ValidationError({"compare": "compares hour or day buckets (minute rows are kept "
                                              f"{settings.AFFECTWATCH['MINUTE_ROLLUP_RETENTION_DAYS']} days)"})
        earlier = trend(site, since - LAST_YEAR, until - LAST_YEAR, bucket, zone=zone, device=device)
        tz = ZoneInfo(site.timezone)
        aligned = [int((datetime.fromtimestamp(t, tz).replace(tzinfo=None) + LAST_YEAR).replace(tzinfo=tz).timestamp())
                   for t in earlier["t"]]
        body["comparison"] = {"since": (since - LAST_YEAR).isoformat(), "until": (until - LAST_YEAR).isoformat(),
                              "series": earlier, "aligned_t": aligned}
    return Response(body)


@extend_schema(parameters=[RangeQuery], responses={200: OpenApiResponse(description="per-zone counts and negative share")})
@api_view(["GET"])
@permission_classes([ReadTelemetry])
@renderer_classes(TELEMETRY_RENDERERS)
def site_zones(request, site_id):
    """Counts and negative share per zone over a range."""
    site = _site(request, site_id)
    since, until, _ = _range(request, default_hours=24)
    _audit_export(request, site, "zones")
    return Response({"site": site.id, "since": since.isoformat(), "until": until.isoformat(),
                     "zones": zone_breakdown(site, since, until)})


@extend_schema(parameters=[RangeQuery], responses={200: OpenApiResponse(description="weekday × hour negative share")})
@api_view(["GET"])
@permission_classes([ReadTelemetry])
@renderer_classes(TELEMETRY_RENDERERS)
def site_heatmap(request, site_id):
    """Negative share by weekday and hour of day (site time zone); default: last 30 days."""
    site = _site(request, site_id)
    since, until, _ = _range(request, default_hours=24 * 30)
    _audit_export(request, site, "heatmap")
    return Response({"site": site.id, "since": since.isoformat(), "until": until.isoformat(),
                     **weekly_heatmap(site, since, until)})


class RollupSerializer(ScopedModelSerializer):
    class Meta:
        model = MinuteRollup
        fields = ["id", "site", "zone", "device", "minute", "negative", "neutral", "positive", "tracks"]


class RollupFilter(filters.FilterSet):
    since = filters.IsoDateTimeFilter(field_name="minute", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="minute", lookup_expr="lt")

    class Meta:
        model = MinuteRollup
        fields = ["site", "zone", "device"]


class RollupList(generics.ListAPIView):
    """Per-device released minute cells, filterable by site, zone, device and time: the
    noisy counts as stored (they may be negative; sums of them are unbiased). Rows whose
    noisy distinct-track count is below K are left out."""

    serializer_class = RollupSerializer
    permission_classes = [ReadTelemetry]
    filterset_class = RollupFilter

    def get_queryset(self):
        rows = MinuteRollup.objects.filter(site__in=visible_sites(self.request.user))
        if k_anonymity() > 0:
            rows = rows.filter(tracks__gte=k_anonymity())
        return rows.order_by("-minute", "device_id")
