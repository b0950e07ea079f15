from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter()
router.register("datasets", api.DatasetViewSet, basename="dataset")
router.register("subjects", api.SubjectViewSet, basename="subject")
router.register("samples", api.SampleViewSet, basename="sample")
router.register("dataset-imports", api.DatasetImportViewSet, basename="dataset-import")

urlpatterns = router.urls
