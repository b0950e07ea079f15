from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from affectwatch.health import healthz

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

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("", include("apps.dashboards.urls")),
    path("", include("apps.sites.urls")),
    path("", include("apps.accounts.urls")),
    path("research/", include("apps.training.urls")),
    path("", include("apps.alerts.urls")),
]
