from django.apps import AppConfig


class OptOutConfig(AppConfig):
    name = "optout"
    verbose_name = "Opt-out registry"
    default_auto_field = "django.db.models.BigAutoField"
