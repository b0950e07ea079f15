from django.urls import path

from . import views

app_name = "alerts"
urlpatterns = [
    path("alerts/", views.alert_list, name="list"),
    path("alerts/<int:alert_id>/acknowledge/", views.alert_acknowledge, name="acknowledge"),
    path("alerts/<int:alert_id>/resolve/", views.alert_resolve, name="resolve"),
    path("sites/<int:site_id>/alert-rules/", views.site_rules, name="site-rules"),
    path("sites/<int:site_id>/alert-rules/<int:rule_id>/", views.rule_edit, name="rule-edit"),
    path("sites/<int:site_id>/alert-rules/<int:rule_id>/delete/", views.rule_delete, name="rule-delete"),
    path("sites/<int:site_id>/alert-rules/<int:rule_id>/rotate-secret/", views.rule_rotate_secret,
         name="rule-rotate-secret"),
]
