from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from .access import organisation_of
from .models import ApiScope, ApiToken, AuditEvent
from .permissions import roles_or_scope
from .scope import ScopedModelSerializer
from .tokens import create_api_token, revoke_api_token

AdminOnly = roles_or_scope()


class ApiTokenSerializer(ScopedModelSerializer):
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiScope.choices), min_length=1)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]


class ApiTokenViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    """API tokens of your organisation (admins). The secret is in the create answer only."""

    serializer_class = ApiTokenSerializer
    permission_classes = [AdminOnly]

    def get_queryset(self):
        return ApiToken.objects.filter(organisation=organisation_of(self.request.user)).order_by("-created_at")

    def create(self, request, *args, **kwargs):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, secret = create_api_token(request, body.validated_data["name"], body.validated_data["scopes"])
        return Response({**ApiTokenSerializer(token).data, "token": secret}, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        token = self.get_object()
        revoke_api_token(request, token)
        return Response(ApiTokenSerializer(token).data)


class AuditEventSerializer(ScopedModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor_label", "action", "target", "details", "ip"]


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = AuditEventSerializer
    permission_classes = [AdminOnly]
    filterset_fields = ["action"]

    def get_queryset(self):
        return AuditEvent.objects.filter(organisation=organisation_of(self.request.user))
