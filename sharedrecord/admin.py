"""Admin for organisations and staff. Nothing clinical is editable here."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from guardian.admin import GuardedModelAdmin

from sharedrecord.models import Organisation, User

admin.site.site_header = "Shared care record administration"


@admin.register(Organisation)
class OrganisationAdmin(GuardedModelAdmin):
    """Object permissions (e.g. managing opt-outs) are granted from each organisation's page."""

    list_display = ("name", "ods_code", "kind", "dsa_start", "dsa_end")
    list_filter = ("kind",)
    search_fields = ("name", "ods_code")
    readonly_fields = ("public_id",)


@admin.register(User)
class StaffAdmin(UserAdmin):  # type: ignore[type-arg]
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
