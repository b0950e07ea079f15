from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from affectwatch.health import healthz
from apps.monitoring import views as monitoring_views

api_v1 = [
    path("", include("apps.sites.api_urls")),
    path("", include("apps.telemetry.api_urls")),
    path("", include("apps.accounts.api_urls")),
    path("", include("apps.datasets.api_urls")),
    path("", include("apps.training.api_urls")),
    path("", include("apps.alerts.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

@csrf_exempt  # a POST to a URL that names nothing is a 404, not an HTML CSRF page
def api_not_found(request, rest=""):
    """Any other URL under /api/ answers in JSON, like every API answer (not Django's
    HTML page), whatever DEBUG is, and whatever the path holds (newlines included)."""
    return JsonResponse({"detail": "Not found."}, status=404)


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", monitoring_views.metrics, name="metrics"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    re_path(r"^api/(?P<rest>(?s:.*))$", api_not_found),
    path("", include("apps.dashboards.urls")),
    path("", include("apps.sites.urls")),
    path("", include("apps.accounts.urls")),
    path("research/", include("apps.training.urls")),
    path("", include("apps.alerts.urls")),
]
