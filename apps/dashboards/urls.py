from django.urls import path

from . import views

app_name = "dashboards"
urlpatterns = [
    path("", views.home, name="home"),
    path("sites/<int:site_id>/", views.site_detail, name="site"),
]
