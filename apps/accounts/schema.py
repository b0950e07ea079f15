"""OpenAPI descriptions of our authentication schemes and filters (drf-spectacular)."""
from drf_spectacular.contrib.django_filters import DjangoFilterExtension
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API token (`aw_…`) with scopes."}


class DeviceTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.sites.authentication.DeviceTokenAuthentication"
    name = "deviceToken"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Device <token>`, the token an edge agent received at enrollment."}


class ScopedFilterSchema(DjangoFilterExtension):
    """The schema of ScopedFilterBackend's parameters: each may be sent empty, meaning no
    filter (`allowEmptyValue`), as the browsable API's filter form sends every field."""

    target_class = "apps.accounts.filters.ScopedFilterBackend"
    priority = 1  # over drf-spectacular's own, which matches subclasses

    def get_schema_operation_parameters(self, auto_schema, *args, **kwargs):
        return [{**p, "allowEmptyValue": True} for p in super().get_schema_operation_parameters(auto_schema, *args, **kwargs)]
