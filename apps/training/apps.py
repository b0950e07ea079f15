from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "apps.training"
    label = "training"

    def ready(self):
        from . import signals  # noqa: F401  (canary roll-outs advance on heartbeats)
