from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter()
router.register("api-tokens", api.ApiTokenViewSet, basename="api-token")
router.register("audit-events", api.AuditEventViewSet, basename="audit-event")
urlpatterns = router.urls
