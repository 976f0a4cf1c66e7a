"""NDJSON over HTTP: POST /api/v1/feeds/fhir as application/fhir+ndjson, a receipt per upload."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from ingestion.models import FeedMessage, MessageKind, MessageStatus
from ingestion.processing import feed_message_process
from sharedrecord.models import Entry
from tests.factories import gp_bundle, make_optout, next_nhs_number
from tests.ingestion.conftest import FeedClient

pytestmark = pytest.mark.django_db
NDJSON = "application/fhir+ndjson"


def patient_and_condition(number: str, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    bundle = gp_bundle(number, key=key)
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    condition = {
        "resourceType": "Condition", "id": f"{key}-c1",
        "subject": {"reference": f"Patient/{patient['id']}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
    }  # fmt: skip
    return patient, condition


def ndjson(*lines: dict[str, Any] | str) -> bytes:
    return "\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines).encode() + b"\n"


def processed_receipt(partner: FeedClient, response: Any) -> dict[str, Any]:
    assert response.status_code == 202, response.content
    message = FeedMessage.objects.get(public_id=response.json()["id"])
    assert message.kind == MessageKind.FHIR_NDJSON
    feed_message_process(message_id=message.pk)
    return dict(partner.receipt(response["Content-Location"]).json())


def test_an_upload_is_stored_then_processed_with_each_bad_line_named(partner: FeedClient) -> None:
    number = next_nhs_number()
    patient, condition = patient_and_condition(number, "nd1")
    body = ndjson(
        condition,  # line 1: before its Patient, still found in the same upload
        '{"resourceType": "Condition", "id": "SECRET-VALUE", ',  # 2: broken JSON
        patient,  # 3
        condition | {"id": "nd1-c2", "clinicalStatus": "SECRET-VALUE"},  # 4: invalid
        {"resourceType": "Claim", "id": "x"},  # 5: not held
    )
    response = partner.post(body, content_type=NDJSON)
    assert response.json()["status"] == "queued"
    assert response.json()["entries"] == 5
    message = FeedMessage.objects.get()
    assert message.status == MessageStatus.RECEIVED

    receipt = processed_receipt(partner, response)
    assert receipt["status"] == "done"
    assert receipt["counts"]["created"] == 2
    assert receipt["counts"]["rejected"] == 3
    errors = [i for i in receipt["outcome"]["issue"] if i["severity"] == "error"]
    assert [
        (i["details"]["text"].split(":")[0], i["details"]["coding"][0]["code"]) for i in errors
    ] == [
        ("Line 2", "invalid-json"),
        ("Line 4", "invalid-resource"),
        ("Line 5", "unsupported-type"),
    ]
    assert "SECRET-VALUE" not in json.dumps(receipt)
    assert Entry.objects.filter(patient__nhs_number=number).count() == 2


def test_a_later_upload_finds_the_patient_an_earlier_one_sent(partner: FeedClient) -> None:
    number = next_nhs_number()
    patient, condition = patient_and_condition(number, "nd2")
    processed_receipt(partner, partner.post(ndjson(patient), content_type=NDJSON))
    receipt = processed_receipt(partner, partner.post(ndjson(condition), content_type=NDJSON))
    assert receipt["counts"]["created"] == 1
    assert Entry.objects.filter(patient__nhs_number=number, resource_type="Condition").exists()


def test_a_redelivered_upload_gets_the_same_receipt(partner: FeedClient) -> None:
    patient, _ = patient_and_condition(next_nhs_number(), "nd3")
    first = partner.post(ndjson(patient), content_type=NDJSON)
    second = partner.post(ndjson(patient), content_type=NDJSON)
    assert second.status_code == 202
    assert second["Content-Location"] == first["Content-Location"]
    assert FeedMessage.objects.count() == 1


def test_an_upload_that_cannot_be_read_is_refused_at_receipt(
    partner: FeedClient, settings: SettingsWrapper
) -> None:
    def code(response: Any) -> tuple[int, str]:
        return response.status_code, response.json()["issue"][0]["details"]["coding"][0]["code"]

    assert code(partner.post(b"\n \n", content_type=NDJSON)) == (400, "empty-upload")
    assert code(partner.post(b'{"a": "\xff"}\n', content_type=NDJSON)) == (400, "invalid-encoding")
    settings.FEED_MAX_ENTRIES = 2
    lines = ndjson(*[{"resourceType": "Flag", "id": f"f{i}"} for i in range(3)])
    assert code(partner.post(lines, content_type=NDJSON)) == (413, "too-many-entries")
    assert not FeedMessage.objects.exists()


def test_an_opt_out_blanks_the_persons_lines_in_a_waiting_upload(
    partner: FeedClient, gp_practice: Any
) -> None:
    opted_out, other = next_nhs_number(), next_nhs_number()
    mine = patient_and_condition(opted_out, "nd4")
    theirs = patient_and_condition(other, "nd5")
    response = partner.post(ndjson(*mine, *theirs), content_type=NDJSON)
    assert response.status_code == 202
    message = FeedMessage.objects.get()

    make_optout(opted_out, gp_practice)
    message.refresh_from_db()
    payload = bytes(message.payload)
    assert opted_out.encode() not in payload
    assert mine[0]["id"].encode() not in payload  # the Condition that pointed at them too
    assert payload.split(b"\n")[:2] == [b"", b""]  # blanked: the other lines keep their numbers

    receipt = processed_receipt(partner, response)
    assert receipt["counts"]["created"] == 2
    assert not Entry.objects.filter(patient__nhs_number=opted_out).exists()
    assert Entry.objects.filter(patient__nhs_number=other).count() == 2
