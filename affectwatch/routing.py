from django.urls import path

from apps.dashboards.consumers import SiteTrendConsumer
from apps.training.routing import websocket_urlpatterns as training_websockets

websocket_urlpatterns = [
    path("ws/sites/<int:site_id>/", SiteTrendConsumer.as_asgi()),
    *training_websockets,
]
