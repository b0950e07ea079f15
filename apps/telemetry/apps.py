from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    name = "apps.telemetry"
    label = "telemetry"

    def ready(self):
        from . import signals  # noqa: F401  (deletes take the device's lock: see signals.py)
