"""Credentials are issued and revoked in the admin; messages and the queue are read-only there."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditEvent
from ingestion.credentials import feed_credential_authenticate
from ingestion.models import FeedCredential
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


def test_opening_a_parked_entry_is_an_audited_read_that_shows_no_resource(
    admin_client: Client,
) -> None:
    from ingestion.models import FeedMessage, MatchQueueItem
    from tests.factories import make_credential, next_nhs_number

    credential, _ = make_credential()
    message = FeedMessage.objects.create(
        organisation=credential.organisation, credential=credential, kind="fhir-json",
        idempotency_key="k", payload_sha256="0" * 64,
    )  # fmt: skip
    number = next_nhs_number()
    item = MatchQueueItem.objects.create(
        message=message, organisation=credential.organisation, entry_index=0,
        resource_type="Patient", source_id="p1", reason="demographics-conflict",
        nhs_number_sent=number, resource={"resourceType": "Patient", "name": [{"family": "Parked"}]},
    )  # fmt: skip
    listing = admin_client.get("/admin/ingestion/matchqueueitem/")
    assert "Parked" not in listing.content.decode()
    assert not AuditEvent.objects.filter(action="match-queue-view").exists()
    page = admin_client.get(f"/admin/ingestion/matchqueueitem/{item.pk}/change/")
    assert page.status_code == 200
    # The parked resource is in nobody's record, so no role sees it (the workbench
    # shows officers what was sent about the person, never clinical content).
    assert "Parked" not in page.content.decode()
    assert number in page.content.decode()
    event = AuditEvent.objects.get(action="match-queue-view")
    assert (event.actor_name, event.nhs_number) == ("sysadmin.test", number)
    assert event.detail == {"item": str(item.public_id), "reason": "demographics-conflict"}
