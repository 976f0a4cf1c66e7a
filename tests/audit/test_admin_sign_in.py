"""Signing in to the admin (`/admin/login/`) is audited exactly like the staff sign-in."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent
from sharedrecord.models import Organisation, OrganisationKind, StaffRole, User

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-admin-password"


def _user(*, superuser: bool = True, staff: bool = True) -> User:
    home, _ = Organisation.objects.get_or_create(
        ods_code="ZSR98", defaults={"name": "Programme", "kind": OrganisationKind.OTHER}
    )
    return User.objects.create_user(
        f"admin.{uuid.uuid4().hex[:8]}",
        password=PASSWORD,
        organisation=home,
        role=StaffRole.SYSTEM_ADMIN,
        is_staff=staff,
        is_superuser=superuser,
    )


def _sign_in(client: Client, username: str, password: str, request_id: str) -> object:
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password},
        headers={"X-Request-ID": request_id},
    )


def _event(request_id: str) -> AuditEvent:
    return AuditEvent.objects.get(request_id=request_id)


def test_a_superusers_admin_sign_in_is_audited(client: Client) -> None:
    admin_user = _user()
    response = _sign_in(client, admin_user.username, PASSWORD, "admin-in-1")
    assert response.status_code == 302  # type: ignore[attr-defined]
    assert response["Location"] == "/admin/"  # type: ignore[index]
    event = _event("admin-in-1")
    assert event.action == AuditAction.SIGN_IN
    assert (event.actor_type, event.actor_id, event.actor_name) == (
        "user", admin_user.public_id, admin_user.username,
    )  # fmt: skip
    assert (event.actor_role_code, event.actor_org_ods) == ("R8015", "ZSR98")
    assert event.client_address == "127.0.0.1"
    assert client.get("/admin/").status_code == 200


def test_a_failed_admin_sign_in_is_audited_like_any_other(client: Client) -> None:
    admin_user = _user()
    wrong = _sign_in(client, admin_user.username, "not-the-password", "admin-in-2")
    unknown = _sign_in(client, "nobody.at.all", "not-the-password", "admin-in-3")
    assert wrong.status_code == unknown.status_code == 200  # type: ignore[attr-defined]
    for request_id, name in (("admin-in-2", admin_user.username), ("admin-in-3", "nobody.at.all")):
        event = _event(request_id)
        assert (event.action, event.outcome) == (AuditAction.SIGN_IN_FAILED, "denied")
        assert (event.actor_type, event.actor_name, event.actor_id) == ("anonymous", name, None)
        assert event.detail == {"locked_out": False}
    assert client.get("/admin/").status_code == 302


def test_the_right_password_without_admin_rights_is_a_failed_admin_sign_in(
    client: Client,
) -> None:
    clerk = _user(superuser=False, staff=False)
    response = _sign_in(client, clerk.username, PASSWORD, "admin-in-4")
    assert response.status_code == 200  # type: ignore[attr-defined]
    event = _event("admin-in-4")
    assert (event.action, event.actor_name) == (AuditAction.SIGN_IN_FAILED, clerk.username)


def test_an_admin_locked_out_after_repeated_failures_is_audited(client: Client, settings) -> None:
    admin_user = _user()
    for n in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(client, admin_user.username, "guessing-wrong", f"guess-{n}")
    locked = _sign_in(client, admin_user.username, PASSWORD, "admin-in-5")
    assert locked.status_code == 429  # type: ignore[attr-defined]
    event = _event("admin-in-5")
    assert event.action == AuditAction.SIGN_IN_FAILED
    assert event.detail == {"locked_out": True}


def test_an_admin_sign_out_is_audited(client: Client) -> None:
    admin_user = _user()
    client.force_login(admin_user)
    client.post("/admin/logout/", headers={"X-Request-ID": "admin-out-1"})
    event = _event("admin-out-1")
    assert (event.action, event.actor_id) == (AuditAction.SIGN_OUT, admin_user.public_id)
    assert client.get("/admin/").status_code == 302


def test_the_admin_sign_in_page_still_works(client: Client) -> None:
    before = AuditEvent.objects.count()
    page = client.get("/admin/login/")
    assert page.status_code == 200
    assert 'name="username"' in page.content.decode()
    assert AuditEvent.objects.count() == before  # showing the form is not a sign-in
    client.force_login(_user())
    assert client.get("/admin/login/")["Location"] == "/admin/"
