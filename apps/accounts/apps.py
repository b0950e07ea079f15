from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self):
        from . import schema, signals  # noqa: F401  (OpenAPI auth extensions; audit of failed log-ins)
