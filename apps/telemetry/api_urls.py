from django.urls import path

from . import api

urlpatterns = [
    path("ingest/", api.ingest, name="ingest"),
    path("sites/<int:site_id>/trend/", api.site_trend, name="site-trend"),
    path("sites/<int:site_id>/zones/", api.site_zones, name="site-zones"),
    path("sites/<int:site_id>/heatmap/", api.site_heatmap, name="site-heatmap"),
    path("rollups/", api.RollupList.as_view(), name="rollups"),
]
