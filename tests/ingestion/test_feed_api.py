"""The feed endpoint: who may post, what is stored before the 202, and every refusal's exact error."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from audit.models import AuditAction, AuditEvent
from ingestion.credentials import feed_credential_revoke
from ingestion.models import FeedMessage, MessageStatus
from tests.factories import gp_bundle, make_credential, make_organisation, next_nhs_number
from tests.ingestion.conftest import FeedClient

pytestmark = pytest.mark.django_db


def _issue_codes(response) -> list[str]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return [i["details"]["coding"][0]["code"] for i in body["issue"]]


def test_it_stores_the_message_then_answers_202_with_a_receipt_to_poll(
    partner: FeedClient,
) -> None:
    bundle = gp_bundle(next_nhs_number())
    response = partner.post(bundle)
    assert response.status_code == 202
    message = FeedMessage.objects.get()
    assert response["Content-Location"] == f"/api/v1/feeds/receipts/{message.public_id}"
    assert response.json()["status"] == "queued"
    assert response.json()["entries"] == len(bundle["entry"])
    assert bytes(message.payload) == partner_payload(bundle)
    assert message.status == MessageStatus.RECEIVED
    event = AuditEvent.objects.get(
        action=AuditAction.FEED_RECEIVED, detail__message=str(message.public_id)
    )
    assert event.actor_type == "system"
    assert event.actor_org_ods == "Z81001"

    polled = partner.receipt(response["Content-Location"])
    assert polled.status_code == 200
    assert polled.json()["id"] == str(message.public_id)


def partner_payload(bundle: dict) -> bytes:
    import json

    return json.dumps(bundle).encode()


def test_redelivery_returns_the_same_receipt_and_stores_nothing_more(partner: FeedClient) -> None:
    bundle = gp_bundle(next_nhs_number())
    first = partner.post(bundle)
    second = partner.post(bundle)
    assert second.status_code == 202
    assert second["Content-Location"] == first["Content-Location"]
    assert FeedMessage.objects.count() == 1


def test_the_idempotency_key_header_identifies_a_message(partner: FeedClient) -> None:
    bundle = gp_bundle(next_nhs_number())
    first = partner.post(bundle, headers={"Idempotency-Key": "msg-1"})
    bundle["id"] = "another-bundle-id"
    second = partner.post(bundle, headers={"Idempotency-Key": "msg-1"})
    assert second.status_code == 409
    assert _issue_codes(second) == ["idempotency-conflict"]
    assert first.status_code == 202
    assert FeedMessage.objects.count() == 1


def test_it_refuses_a_missing_wrong_or_revoked_token(client: Client, feed) -> None:
    credential, token = feed
    bundle = gp_bundle(next_nhs_number())
    anonymous = FeedClient(client, "").post(bundle)
    assert anonymous.status_code == 401
    assert _issue_codes(anonymous) == ["unauthenticated"]
    wrong = FeedClient(client, token[:-4] + "AAAA").post(bundle)
    assert wrong.status_code == 401
    feed_credential_revoke(credential=credential)
    revoked = FeedClient(client, token).post(bundle)
    assert revoked.status_code == 401
    assert FeedMessage.objects.count() == 0


def test_it_refuses_an_organisation_without_an_active_agreement(client: Client) -> None:
    lapsed = make_organisation(
        dsa_start=datetime.date(2020, 1, 1), dsa_end=datetime.date(2021, 1, 1)
    )
    _, token = make_credential(lapsed)
    response = FeedClient(client, token).post(gp_bundle(next_nhs_number()))
    assert response.status_code == 403
    assert _issue_codes(response) == ["agreement-inactive"]
    assert FeedMessage.objects.count() == 0


def test_a_system_reads_only_its_own_organisations_receipts(client: Client, partner) -> None:
    location = partner.post(gp_bundle(next_nhs_number()))["Content-Location"]
    _, other_token = make_credential()
    response = FeedClient(client, other_token).receipt(location)
    assert response.status_code == 404
    assert _issue_codes(response) == ["not-found"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ('{"resourceType": "Bundle", "type": ', "application/fhir+json", 400, "invalid-json"),
        ('{"resourceType": "Patient", "id": "x"}', "application/fhir+json", 400, "not-a-bundle"),
        ('{"resourceType": "Bundle", "type": "searchset", "entry": [{}]}', "application/fhir+json", 400, "unsupported-bundle-type"),
        ('{"resourceType": "Bundle", "type": "collection", "entry": []}', "application/fhir+json", 400, "empty-bundle"),
        ('{"resourceType": "Bundle", "type": "collection"}', "application/fhir+json", 400, "empty-bundle"),
        ("<Bundle xmlns='http://hl7.org/fhir'><type value='collection'/>", "application/fhir+xml", 400, "invalid-xml"),
        ('<?xml version="1.0"?><!DOCTYPE b [<!ENTITY x "y">]><Bundle xmlns="http://hl7.org/fhir"><type value="collection"/><entry/></Bundle>', "application/fhir+xml", 400, "xml-dtd"),
        ("MSH|^~\\&|", "text/plain", 415, "unsupported-media-type"),
    ],
)  # fmt: skip
def test_each_unreadable_message_gets_its_own_error_and_nothing_is_stored(
    partner: FeedClient, body: str, content_type: str, status: int, code: str
) -> None:
    response = partner.post(body, content_type=content_type)
    assert response.status_code == status
    assert _issue_codes(response) == [code]
    assert FeedMessage.objects.count() == 0


def test_limits_answer_413_with_the_limit(partner: FeedClient, settings: SettingsWrapper) -> None:
    bundle = gp_bundle(next_nhs_number())
    settings.FEED_MAX_ENTRIES = 3
    too_many = partner.post(bundle)
    assert too_many.status_code == 413
    assert _issue_codes(too_many) == ["too-many-entries"]
    assert "the limit is 3" in too_many.json()["issue"][0]["details"]["text"]
    settings.FEED_MAX_ENTRIES = 5000
    settings.FEED_MAX_BYTES = 1000
    too_big = partner.post(bundle)
    assert too_big.status_code == 413
    assert _issue_codes(too_big) == ["too-large"]
    assert FeedMessage.objects.count() == 0


def test_errors_never_echo_what_the_partner_sent(partner: FeedClient) -> None:
    secret = "9990000018"
    response = partner.post('{"resourceType": "Patient", "identifier": "' + secret + '"}')
    assert response.status_code == 400
    assert secret not in response.content.decode()
