from django.apps import AppConfig


class SharedRecordConfig(AppConfig):
    name = "sharedrecord"
    verbose_name = "Shared care record"
    default_auto_field = "django.db.models.BigAutoField"
