from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AuditedAdminConfig(admin_apps.AdminConfig):
    """Django's admin, with every page that can change something audited (sharedrecord/admin.py).

    Named in INSTALLED_APPS in place of django.contrib.admin; never this module's default.
    """

    default = False

    def ready(self) -> None:
        super().ready()  # autodiscover: every app's admin is registered now
        from sharedrecord.admin import admin_changes_audit

        admin_changes_audit()


class SharedRecordConfig(AppConfig):
    name = "sharedrecord"
    verbose_name = "Shared care record"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.checks import Tags, register

        from audit.directory import directory_register, subject_lookup_register
        from audit.governance import governance_resolver_register
        from sharedrecord.checks import (
            credentials_sealed_under_their_own_keys,
            passwords_need_a_second_factor,
        )

        register(passwords_need_a_second_factor, Tags.security, deploy=True)
        register(credentials_sealed_under_their_own_keys, Tags.security, deploy=True)
        from sharedrecord.access import governance_viewer_for
        from sharedrecord.demographics import governance_subject
        from sharedrecord.organisations import directory_names

        governance_resolver_register(governance_viewer_for)
        directory_register(directory_names)
        subject_lookup_register(governance_subject)

        from audit.metrics import AuditChainCollector
        from sharedrecord.metrics import NotificationsPendingCollector, metrics_collector_register
        from sharedrecord.taskmetrics import QueueCollector

        for collector in (AuditChainCollector(), NotificationsPendingCollector(), QueueCollector()):
            metrics_collector_register(collector)
