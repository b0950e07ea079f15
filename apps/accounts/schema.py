"""OpenAPI descriptions of our authentication schemes (drf-spectacular)."""
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
