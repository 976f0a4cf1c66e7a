"""Changes made in the admin land in the audit trail with who made them."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent
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
