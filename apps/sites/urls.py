from django.urls import path

from . import views

app_name = "sites"
urlpatterns = [
    path("devices/", views.devices, name="devices"),
    path("devices/enrollment-codes/", views.create_enrollment_code, name="create-enrollment-code"),
    path("devices/<uuid:device_id>/revoke/", views.revoke_device, name="revoke-device"),
]
