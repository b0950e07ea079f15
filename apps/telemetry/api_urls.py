from django.urls import path

from . import api

urlpatterns = [
    path("ingest/", api.ingest, name="ingest"),
    path("sites/<int:site_id>/trend/", api.site_trend, name="site-trend"),
]
