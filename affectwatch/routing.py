from django.urls import path

from apps.dashboards.consumers import SiteTrendConsumer

websocket_urlpatterns = [
    path("ws/sites/<int:site_id>/", SiteTrendConsumer.as_asgi()),
]
