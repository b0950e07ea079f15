from django.urls import path
from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter()
router.register("training-jobs", api.FineTuneJobViewSet, basename="training-job")
router.register("model-versions", api.ModelVersionViewSet, basename="model-version")
router.register("deployments", api.DeploymentViewSet, basename="deployment")

urlpatterns = [
    path("device-models/<str:version>/", api.device_model, name="device-model"),
    *router.urls,
]
