from django.urls import path

from . import views

app_name = "accounts"
urlpatterns = [
    path("settings/tokens/", views.tokens, name="tokens"),
    path("settings/tokens/<int:token_id>/revoke/", views.revoke_token, name="revoke-token"),
    path("settings/audit/", views.audit_log, name="audit"),
]
