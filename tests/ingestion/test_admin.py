"""Credentials are issued and revoked in the admin; messages and the queue are read-only there."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditEvent
from ingestion.models import FeedCredential
from ingestion.services import feed_credential_authenticate
from sharedrecord.models import StaffRole, User
from tests.factories import make_organisation

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client) -> Client:
    home = make_organisation(ods_code="ZSR42", kind="other")
    user = User.objects.create_user(
        "sysadmin.test", password="x-long-password-1", organisation=home,
        role=StaffRole.SYSTEM_ADMIN, is_staff=True, is_superuser=True,
    )  # fmt: skip
    client.force_login(user)
    return client


def test_issuing_in_the_admin_shows_a_working_token_once(admin_client: Client) -> None:
    partner = make_organisation(ods_code="ZAC42")
    response = admin_client.post(
        "/admin/ingestion/feedcredential/add/",
        {"organisation": partner.pk, "system": "EPR"},
        follow=True,
    )
    assert response.status_code == 200
    (message,) = [str(m) for m in response.context["messages"] if "shown once" in str(m)]
    token = message.rsplit(": ", 1)[1]
    credential = feed_credential_authenticate(token=token)
    assert credential is not None
    assert credential.organisation == partner
    assert token not in str(FeedCredential.objects.values_list().get())
    issued = AuditEvent.objects.get(
        detail__object=str(credential.public_id), detail__change="issued"
    )
    assert issued.actor_name == "sysadmin.test"

    admin_client.post(
        "/admin/ingestion/feedcredential/",
        {"action": "revoke", "_selected_action": [credential.pk]},
    )
    assert feed_credential_authenticate(token=token) is None


@pytest.mark.parametrize("model", ["feedmessage", "matchqueueitem"])
def test_messages_and_the_matching_queue_cannot_be_edited(admin_client: Client, model: str) -> None:
    assert admin_client.get(f"/admin/ingestion/{model}/").status_code == 200
    assert admin_client.get(f"/admin/ingestion/{model}/add/").status_code == 403
