from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.access import visible_sites
from apps.accounts.filters import UtcDateTimeFilter
from apps.accounts.models import ApiScope, Role
from apps.accounts.permissions import roles_or_scope

from . import services
from .models import ACTIVE_STATES, Alert, AlertRule, AlertState
from .serializers import (
    AlertActionSerializer,
    AlertRuleCreatedSerializer,
    AlertRuleSerializer,
    AlertSerializer,
    WebhookSecretSerializer,
)

# Rules hold people's e-mail addresses and a signing key: people who manage alerts only.
ManageAlerts = roles_or_scope(Role.SAFETY_OFFICER)
ReadAlerts = roles_or_scope(Role.SAFETY_OFFICER, scope=ApiScope.ALERTS_READ)
NO_STORE = {"Cache-Control": "no-store"}  # answers that carry a webhook secret


@extend_schema_view(
    create=extend_schema(responses={201: AlertRuleCreatedSerializer}),
)
class AlertRuleViewSet(viewsets.ModelViewSet):
    """Alert rules of the sites you can see. The webhook secret is returned once, when
    the rule is made (or its secret rotated)."""

    serializer_class = AlertRuleSerializer
    permission_classes = [ManageAlerts]
    filterset_fields = ["site", "enabled"]

    def get_queryset(self):
        return AlertRule.objects.filter(site__in=visible_sites(self.request.user)).select_related("created_by")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rule = services.create_rule(request, **serializer.validated_data)
        return Response(AlertRuleCreatedSerializer(rule, context=self.get_serializer_context()).data,
                        status=status.HTTP_201_CREATED, headers=NO_STORE)

    def perform_update(self, serializer):
        data = {k: v for k, v in serializer.validated_data.items() if k != "site"}
        services.update_rule(self.request, serializer.instance, **data)

    def perform_destroy(self, instance):
        services.delete_rule(self.request, instance)

    @extend_schema(request=None, responses={200: WebhookSecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """Replace the webhook signing secret; the new one is shown once."""
        rule = self.get_object()
        secret = services.rotate_secret(request, rule)
        return Response({"id": rule.pk, "webhook_secret": secret}, headers=NO_STORE)


class AlertFilter(filters.FilterSet):
    state = filters.ChoiceFilter(
        choices=[*AlertState.choices, ("active", "Open or acknowledged")], method="filter_state",
        help_text="open, acknowledged, resolved, or active (open or acknowledged)",
    )
    opened_after = UtcDateTimeFilter(field_name="opened_at", lookup_expr="gte")
    opened_before = UtcDateTimeFilter(field_name="opened_at", lookup_expr="lt")

    class Meta:
        model = Alert
        fields = ["site", "rule", "state", "opened_after", "opened_before"]

    def filter_state(self, queryset, name, value):
        if value == "active":
            return queryset.filter(state__in=ACTIVE_STATES)
        return queryset.filter(state=value)


_conflict = OpenApiResponse(description="the alert is not in a state that allows this")


class AlertViewSet(viewsets.ReadOnlyModelViewSet):
    """Alerts of the sites you can see, newest first. API tokens need `alerts:read`."""

    serializer_class = AlertSerializer
    filterset_class = AlertFilter

    def get_permissions(self):
        if self.action in ("list", "retrieve"):
            return [ReadAlerts()]
        return [ManageAlerts()]

    def get_queryset(self):
        return (
            Alert.objects.filter(site__in=visible_sites(self.request.user))
            .select_related("acknowledged_by", "resolved_by")
            .prefetch_related("deliveries")
        )

    def _transition(self, request, change):
        alert = self.get_object()
        body = AlertActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            alert = change(request, alert, body.validated_data.get("note", ""))
        except services.StateError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(AlertSerializer(self.get_queryset().get(pk=alert.pk)).data)

    @extend_schema(request=AlertActionSerializer, responses={200: AlertSerializer, 409: _conflict})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """Say that someone is looking into an open alert."""
        return self._transition(request, services.acknowledge)

    @extend_schema(request=AlertActionSerializer, responses={200: AlertSerializer, 409: _conflict})
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        """Close an open or acknowledged alert, with an optional note of what was done."""
        return self._transition(request, services.resolve)
