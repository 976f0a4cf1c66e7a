"""The notifications app."""

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "sharedrecord.notifications"
    label = "notifications"
    verbose_name = "Notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sharedrecord.metrics import notifications_pending_register
        from sharedrecord.notifications.delivery import deliveries_pending

        notifications_pending_register(deliveries_pending)
