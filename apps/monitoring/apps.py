from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"
    verbose_name = "Monitoring"

    def ready(self):
        from . import checks  # noqa: F401  (registers the deploy checks)
