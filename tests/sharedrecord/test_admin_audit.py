"""Changes made in the admin land in the audit trail with who made them."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import Client, RequestFactory
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditAction, AuditEvent
from sharedrecord.admin import AuditedAdminMixin
from sharedrecord.models import Organisation, OrganisationKind, StaffRole, User

pytestmark = pytest.mark.django_db


def test_changing_an_organisation_in_the_admin_is_audited(client: Client) -> None:
    home = Organisation.objects.create(
        ods_code="ZSR99", name="Programme", kind=OrganisationKind.OTHER
    )
    admin_user = User.objects.create_user(
        "admin.one",
        password="a-long-admin-password",
        organisation=home,
        role=StaffRole.SYSTEM_ADMIN,
        is_staff=True,
        is_superuser=True,
    )
    client.force_login(admin_user)
    response = client.post(
        f"/admin/sharedrecord/organisation/{home.pk}/change/",
        {"ods_code": "ZSR99", "name": "Renamed programme", "kind": "other"},
        headers={"X-Request-ID": "admin-req-1"},
    )
    assert response.status_code == 302, response.content[:500]
    event = AuditEvent.objects.filter(request_id="admin-req-1").get()
    assert event.action == AuditAction.ADMIN_CHANGE
    assert event.actor_id == admin_user.public_id
    assert event.actor_role_code == "R8015"
    assert event.detail == {
        "model": "sharedrecord.Organisation",
        "object": str(home.public_id),
        "change": "changed name",
    }


def admin_user() -> User:
    home, _ = Organisation.objects.get_or_create(
        ods_code="ZSR99", defaults={"name": "Programme", "kind": OrganisationKind.OTHER}
    )
    return User.objects.create_user(
        "admin.two", password="a-long-admin-password", organisation=home,
        role=StaffRole.SYSTEM_ADMIN, is_staff=True, is_superuser=True,
    )  # fmt: skip


def test_every_admin_page_that_can_change_something_audits_it() -> None:
    request = RequestFactory().get("/admin/")
    request.user = admin_user()
    unaudited = []
    for model, model_admin in admin.site._registry.items():
        changes = (
            model_admin.has_add_permission(request)
            or model_admin.has_change_permission(request, model())
            or model_admin.has_delete_permission(request, model())
        )
        label = model._meta.label
        if changes and not isinstance(model_admin, AuditedAdminMixin):
            unaudited.append(label)
    assert unaudited == []


def test_unlocking_an_account_and_removing_a_second_factor_are_audited(client: Client) -> None:
    user = admin_user()
    client.force_login(user)
    attempt = AccessAttempt.objects.create(
        username="locked.out", ip_address="192.0.2.1", user_agent="x", failures_since_start=5,
        get_data="", post_data="", http_accept="", path_info="/accounts/login/",
    )  # fmt: skip
    device = TOTPDevice.objects.create(user=user, name="phone")
    for url, obj in (
        (f"/admin/axes/accessattempt/{attempt.pk}/delete/", attempt),
        (f"/admin/otp_totp/totpdevice/{device.pk}/delete/", device),
    ):
        response = client.post(url, {"post": "yes"})
        assert response.status_code == 302, response.content[:300]
        assert AuditEvent.objects.filter(
            action=AuditAction.ADMIN_CHANGE,
            detail__model=obj._meta.label,
            detail__object=str(obj.pk),
            detail__change="deleted",
        ).exists(), url


def test_deleting_several_at_once_audits_each(client: Client) -> None:
    client.force_login(admin_user())
    groups = [Group.objects.create(name=f"group {i}") for i in range(2)]
    response = client.post(
        "/admin/auth/group/",
        {"action": "delete_selected", "_selected_action": [g.pk for g in groups], "post": "yes"},
    )
    assert response.status_code == 302, response.content[:300]
    deleted = AuditEvent.objects.filter(detail__model="auth.Group", detail__change="deleted")
    assert sorted(e.detail["object"] for e in deleted) == sorted(str(g.pk) for g in groups)
