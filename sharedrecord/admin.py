"""Admin for organisations and staff. Nothing clinical is editable here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.db import models
from django.http import HttpRequest
from guardian.admin import GuardedModelAdmin

from audit.models import AuditAction
from audit.services import audit_event_record
from sharedrecord.auditing import actor_for, context_for
from sharedrecord.models import Organisation, User

admin.site.site_header = "Shared care record administration"


def _audit_admin_change(request: HttpRequest, obj: models.Model, change: str) -> None:
    # The admin saves inside a transaction, so the event commits with the change.
    audit_event_record(
        action=AuditAction.ADMIN_CHANGE,
        actor=actor_for(request.user),  # type: ignore[arg-type]
        detail={
            "model": obj._meta.label,
            "object": str(getattr(obj, "public_id", obj.pk)),
            "change": change,
        },
        context=context_for(request),
    )


class AuditedAdminMixin:
    """Every add, change and delete made in the admin writes an audit event."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        fields = sorted(form.changed_data) if change else []
        _audit_admin_change(request, obj, f"changed {', '.join(fields)}" if change else "added")

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        _audit_admin_change(request, obj, "deleted")
        super().delete_model(request, obj)  # type: ignore[misc]


@admin.register(Organisation)
class OrganisationAdmin(AuditedAdminMixin, GuardedModelAdmin):  # type: ignore[misc]
    """Object permissions (e.g. managing opt-outs) are granted from each organisation's page."""

    list_display = ("name", "ods_code", "kind", "dsa_start", "dsa_end")
    list_filter = ("kind",)
    search_fields = ("name", "ods_code")
    readonly_fields = ("public_id",)


@admin.register(User)
class StaffAdmin(AuditedAdminMixin, UserAdmin):  # type: ignore[type-arg]
    list_display = ("username", "first_name", "last_name", "organisation", "role", "is_active")
    list_filter = ("role", "organisation__kind", "is_active")
    search_fields = ("username", "first_name", "last_name", "email")
    fieldsets = (
        *(UserAdmin.fieldsets or ()),
        ("Organisation and role", {"fields": ("organisation", "role", "public_id")}),
    )
    add_fieldsets = (
        *UserAdmin.add_fieldsets,
        ("Organisation and role", {"fields": ("organisation", "role")}),
    )
    readonly_fields = ("public_id",)
