"""Admin for organisations and staff. Nothing clinical is editable here.

Signing in and out of the admin is audited exactly like the staff pages
(sharedrecord/urls.py routes `/admin/login/` and `/admin/logout/` here).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.admin import UserAdmin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from guardian.admin import GuardedModelAdmin

from audit.context import context_for
from audit.models import AuditAction
from audit.trail import audit_event_record
from sharedrecord.auditing import actor_for
from sharedrecord.models import Organisation, PullSource, User
from sharedrecord.oauth.consent import api_tokens_revoke_for
from sharedrecord.views import SignInView, SignOutView

admin.site.site_header = "Shared care record administration"


class AdminSignInView(SignInView):
    """The admin's sign-in form, audited by SignInView: one event per success and failure."""

    authentication_form = AdminAuthenticationForm
    template_name = "admin/login.html"


@never_cache
def admin_sign_in(request: HttpRequest) -> HttpResponseBase:
    """`/admin/login/`: what AdminSite.login does, through the audited sign-in view.

    AdminSite.login builds Django's own LoginView, which writes nothing, so a
    superuser's sign-in (or a guess at one) would leave no trace.
    """
    site = admin.site
    if request.method == "GET" and site.has_permission(request):
        return redirect(reverse("admin:index", current_app=site.name))
    context = {
        **site.each_context(request),
        "title": _("Log in"),
        "subtitle": None,
        "app_path": request.get_full_path(),
        "username": request.user.get_username(),
    }
    if REDIRECT_FIELD_NAME not in request.GET and REDIRECT_FIELD_NAME not in request.POST:
        context[REDIRECT_FIELD_NAME] = reverse("admin:index", current_app=site.name)
    request.current_app = site.name
    return AdminSignInView.as_view(extra_context=context)(request)


def admin_sign_out(request: HttpRequest) -> HttpResponseBase:
    """`/admin/logout/`: AdminSite.logout, through the audited sign-out view."""
    site = admin.site
    request.current_app = site.name
    context = {**site.each_context(request), "has_permission": False}
    return SignOutView.as_view(extra_context=context)(request)


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

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """The "delete selected" action: one event per object deleted."""
        for obj in queryset:
            _audit_admin_change(request, obj, "deleted")
        super().delete_queryset(request, queryset)  # type: ignore[misc]


def admin_changes_audit() -> None:
    """Give every registered admin that lacks it the audited mixin (groups, lockouts, second
    factors, OAuth applications and tokens, our read-only pages), so no add, change or
    delete made in the admin goes unaudited.

    Run once every app's admin is registered (AuditedAdminConfig.ready, after autodiscover).
    """
    for model, model_admin in list(admin.site._registry.items()):
        if isinstance(model_admin, AuditedAdminMixin):
            continue
        name = f"Audited{type(model_admin).__name__}"
        audited = type(name, (AuditedAdminMixin, type(model_admin)), {})
        admin.site.unregister(model)
        admin.site.register(model, audited)


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

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Save, and end the member of staff's API tokens when the account is deactivated."""
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            api_tokens_revoke_for(user=obj, reason="deactivated", context=context_for(request))


@admin.register(PullSource)
class PullSourceAdmin(AuditedAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """An organisation's live pull endpoint (issue 25). The secret is named, never stored."""

    list_display = ("organisation", "mode", "base_url", "search", "timeout_seconds", "active")
    list_filter = ("mode", "active", "auth")
    search_fields = ("organisation__name", "organisation__ods_code", "base_url")
    readonly_fields = ("public_id", "created_at")
    fields = (
        "organisation", "mode", "active", "base_url", "token_url", "auth", "client_id",
        "secret_name", "key_id", "scope", "search", "resource_types", "timeout_seconds",
        "public_id", "created_at",
    )  # fmt: skip
