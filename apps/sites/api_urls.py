from django.urls import path
from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter()
router.register("sites", api.SiteViewSet, basename="site")
router.register("zones", api.ZoneViewSet, basename="zone")
router.register("devices", api.DeviceViewSet, basename="device")
router.register("enrollment-codes", api.EnrollmentCodeViewSet, basename="enrollment-code")

urlpatterns = [
    path("enroll/", api.enroll, name="enroll"),
    path("heartbeat/", api.heartbeat, name="heartbeat"),
    *router.urls,
]
