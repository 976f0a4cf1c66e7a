"""What FHIR and HL7 v2 clients send in Accept is accepted, and a refusal keeps the protocol's shape."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import (
    hl7_message,
    make_credential,
    make_organisation,
    next_nhs_number,
    small_bundle,
)
from tests.ingestion.conftest import FeedClient

pytestmark = pytest.mark.django_db
ER7 = "x-application/hl7-v2+er7"
FHIR_ACCEPTS = [
    None,
    "application/fhir+json",
    "application/json",
    "*/*",
    "application/fhir+json; fhirVersion=4.0",
    "application/fhir+xml;q=0.5, application/fhir+json",
    "application/*",
]


def _accept(value: str | None) -> dict[str, str]:
    return {"Accept": value} if value is not None else {}


@pytest.mark.parametrize("accept", FHIR_ACCEPTS)
def test_the_fhir_feed_and_its_receipt_answer_what_fhir_clients_accept(
    partner: FeedClient, accept: str | None
) -> None:
    response = partner.post(small_bundle(next_nhs_number()), headers=_accept(accept))
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    receipt = partner.client.get(
        response["Content-Location"],
        headers={"Authorization": f"Bearer {partner.token}", **_accept(accept)},
    )
    assert receipt.status_code == 200, receipt.content
    assert receipt.json()["id"] == response.json()["id"]


def test_fhir_json_is_the_answer_when_the_client_asks_for_it(partner: FeedClient) -> None:
    response = partner.post(
        small_bundle(next_nhs_number()), headers={"Accept": "application/fhir+json"}
    )
    assert response["Content-Type"].startswith("application/fhir+json")


@pytest.mark.parametrize("accept", ["text/html", "application/fhir+xml"])
def test_an_unservable_accept_gets_a_406_operation_outcome(
    partner: FeedClient, accept: str
) -> None:
    response = partner.post(small_bundle(next_nhs_number()), headers={"Accept": accept})
    assert response.status_code == 406
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["details"]["coding"][0]["code"] == "not-acceptable"
    assert response["Content-Type"].startswith("application/fhir+json")


def test_an_error_answers_in_fhir_shape_whatever_accept_says(partner: FeedClient) -> None:
    response = partner.post('{"resourceType": "Patient"}', headers={"Accept": "text/html"})
    assert response.status_code in {400, 406}
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.fixture
def hospital() -> tuple[object, str]:
    return make_credential(make_organisation(ods_code="ZCN01", kind="acute"))


@pytest.mark.parametrize(
    "accept", [None, ER7, "application/hl7-v2", "application/hl7-v2+er7", "*/*", "text/plain"]
)
def test_the_hl7_endpoint_answers_an_ack_for_its_own_media_type(
    client: Client, hospital, accept: str | None
) -> None:
    _, token = hospital
    response = client.post(
        "/api/v1/feeds/hl7v2", data=hl7_message(next_nhs_number(), control_id="NEG1").encode(),
        content_type=ER7, headers={"Authorization": f"Bearer {token}", **_accept(accept)},
    )  # fmt: skip
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith(ER7)
    assert response.content.decode().split("\r")[1].startswith("MSA|AA|")


def test_an_hl7_refusal_of_accept_is_an_ar_ack_not_json(client: Client, hospital) -> None:
    _, token = hospital
    response = client.post(
        "/api/v1/feeds/hl7v2", data=hl7_message(next_nhs_number(), control_id="NEG2").encode(),
        content_type=ER7, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )  # fmt: skip
    assert response.status_code == 406
    assert response["Content-Type"].startswith(ER7)
    assert response.content.decode().split("\r")[1].startswith("MSA|AR|")


def test_the_hl7_endpoint_answers_a_wrong_method_with_an_ack(client: Client, hospital) -> None:
    _, token = hospital
    response = client.get("/api/v1/feeds/hl7v2", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 405
    assert response.content.decode().startswith("MSH|")


@pytest.mark.parametrize("receipt_id", ["not-a-uuid", "K%C2%A1", "a/b", "12345"])
def test_a_malformed_receipt_id_is_a_404_operation_outcome(
    partner: FeedClient, receipt_id: str
) -> None:
    response = partner.receipt(f"/api/v1/feeds/receipts/{receipt_id}")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
