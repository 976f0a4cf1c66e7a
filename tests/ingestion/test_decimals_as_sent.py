"""A decimal is kept as it was sent (5.10 stays 5.10), from each door to the read API.

FHIR: the precision of a decimal has significance (0.010 is not 0.01). Python's
json read decimals as floats, so a result sent as 5.10 was stored and served as
5.1. Floats compare 5.1 == 5.10, so these tests read text, never parsed numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from ingestion.demo import PEOPLE, BundleBuilder
from ingestion.fhir.fields import content_hash
from ingestion.models import MatchQueueItem, MessageKind
from sharedrecord import fhirjson
from sharedrecord.models import Entry, Patient
from tests.factories import (
    feed_kind,
    hl7_message,
    make_credential,
    next_nhs_number,
    partner,
)
from tests.fhirapi import body, fhir_get, partner_token

pytestmark = pytest.mark.django_db

# Placeholders written into the JSON, then replaced by the text a sender would send.
VALUE, LOW, HIGH = 111.125, 222.125, 333.125
SENT = {"111.125": "5.10", "222.125": "3.50", "333.125": "5.10E+0"}


def _as_sent(document: dict[str, Any]) -> bytes:
    text = json.dumps(document)
    for placeholder, sent in SENT.items():
        text = text.replace(placeholder, sent)
    return text.encode()


def _observation() -> dict[str, Any]:
    return {
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}], "text": "Potassium"},
        "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": VALUE, "unit": "mmol/L"},
        "referenceRange": [{"low": {"value": LOW}, "high": {"value": HIGH}}],
    }


def _stored_text(number: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT e.resource::text FROM sharedrecord_entry e"
            " JOIN sharedrecord_patient p ON p.id = e.patient_id"
            " WHERE p.nhs_number = %s AND e.resource_type = 'Observation'",
            [number],
        )
        return str(cursor.fetchone()[0])


def _served_text(client: Client, number: str) -> str:
    entry = Entry.objects.get(patient__nhs_number=number, resource_type="Observation")
    token = partner_token(client, partner("Z81001"), role="gp")
    response = fhir_get(client, token, f"Observation/{entry.public_id}")
    assert response.status_code == 200
    return body(response).decode()


def test_a_fhir_bundles_decimals_are_stored_and_served_as_sent(client: Client) -> None:
    number = next_nhs_number()
    person = dataclasses.replace(
        PEOPLE[0], key=f"d{number}", nhs_number_sent=number, gp_ods="Z81001"
    )
    bundle = BundleBuilder(person, "Z81001", "d").patient().add("Observation", _observation())
    message = feed_kind(
        make_credential(partner("Z81001"))[0], MessageKind.FHIR_JSON, _as_sent(bundle.bundle())
    )
    assert message.status == "done", message.issues
    stored = _stored_text(number)
    assert '"value": 5.10' in stored
    assert '"value": 3.50' in stored
    assert '"value": 5.10' in stored.split('"high"')[1]  # 5.10E+0, as PostgreSQL writes it
    served = _served_text(client, number)
    assert '"value": 5.10' in served
    assert '"value": 3.50' in served


def test_an_ndjson_uploads_decimals_are_stored_as_sent() -> None:
    number = next_nhs_number()
    person = dataclasses.replace(
        PEOPLE[0], key=f"n{number}", nhs_number_sent=number, gp_ods="Z81001"
    )
    patient = BundleBuilder(person, "Z81001", "n").patient().entries[0]["resource"]
    observation = {
        "resourceType": "Observation", "id": f"obs-{number}", **_observation(),
        "subject": {"reference": f"Patient/{patient['id']}"},
    }  # fmt: skip
    lines = b"\n".join(_as_sent(resource) for resource in (patient, observation))
    message = feed_kind(make_credential(partner("Z81001"))[0], MessageKind.FHIR_NDJSON, lines)
    assert message.status == "done", message.issues
    stored = _stored_text(number)
    assert '"value": 5.10' in stored
    assert '"value": 3.50' in stored


def _oru(number: str) -> bytes:
    return (
        hl7_message(number, control_id=f"dec{number}").replace("ADT^A01", "ORU^R01")
        + "\r".join([
            "OBR|1|P1|F77^LAB|U&E^Urea and electrolytes^L|||20261119083000",
            "OBX|1|NM|K^Potassium^L||5.10|mmol/L|3.50-5.10|N|||F|||20261119083000",
        ])
        + "\r"
    ).encode()  # fmt: skip


def test_an_hl7_v2_results_decimals_are_stored_as_sent() -> None:
    number = next_nhs_number()
    message = feed_kind(make_credential(partner("ZAC01"))[0], MessageKind.HL7V2, _oru(number))
    assert message.status == "done", message.issues
    stored = _stored_text(number)
    assert '"value": 5.10' in stored
    assert '"low": {"value": 3.50}' in stored
    assert '"high": {"value": 5.10}' in stored


def test_a_parked_entry_keeps_its_decimals_until_it_is_filed() -> None:
    # An NHS number that fails its check digit parks the message's entries (for the
    # workbench), its result among them.
    message = feed_kind(make_credential(partner("ZAC01"))[0], MessageKind.HL7V2, _oru("9990015008"))
    assert message.status == "done", message.issues
    parked = MatchQueueItem.objects.get(message=message, resource_type="Observation")
    assert parked.resource["valueQuantity"]["value"] == Decimal("5.10")
    assert str(parked.resource["valueQuantity"]["value"]) == "5.10"
    assert not Patient.objects.filter(nhs_number="9990015008").exists()


def test_a_resource_sent_again_unchanged_hashes_as_it_did_before_decimals_were_kept() -> None:
    # Content hashes decide whether a re-sent resource changed: one whose numbers read
    # the same as floats must hash as before (no mass re-update after an upgrade); one
    # sent with more precision is a change.
    text = '{"resourceType": "Observation", "valueQuantity": {"value": 5.1, "n": 3}, "s": "é"}'
    before = hashlib.sha256(
        json.dumps(json.loads(text), sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert content_hash(fhirjson.loads(text)) == before
    assert content_hash(fhirjson.loads(text.replace("5.1", "5.10"))) != before


def test_numbers_no_decimal_can_mean_are_read_as_they_always_were() -> None:
    # Beyond a double's range, or with more digits than any measurement, PostgreSQL could
    # not store the number as written: it is read as a float (the infinite is refused by
    # validation), as before.
    read = fhirjson.loads('{"a": 1e400, "b": 0.' + "1" * 60 + ', "c": 2.50}')
    assert read["a"] == float("inf")
    assert isinstance(read["b"], float)
    assert read["c"] == Decimal("2.50")
    assert fhirjson.dumps(read | {"a": 1}) == '{"a":1,"b":' + repr(read["b"]) + ',"c":2.50}'
