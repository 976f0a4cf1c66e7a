"""A decimal is kept as it was sent (5.10 stays 5.10), from each door to the pages and the API.

Full-resource notifications: tests/notifications (test_delivery, test_subscription_api).

FHIR: the precision of a decimal has significance (0.010 is not 0.01). Python's
json read decimals as floats, so a result sent as 5.10 was stored and served as
5.1. Floats compare 5.1 == 5.10, so these tests read text, never parsed numbers.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from audit.trail import AuditActor
from ingestion.demo import BundleBuilder
from ingestion.fhir.entries import raw_entries
from ingestion.fhir.fields import content_hash
from ingestion.fhir.redaction import redact_person
from ingestion.fhir.validation import validate
from ingestion.models import MatchQueueItem, MessageKind
from sharedrecord import fhirjson
from sharedrecord.identity import identity_operation_undo, patients_merge
from sharedrecord.models import Entry, Patient
from sharedrecord.presentation.values import number_of, number_shown
from tests.factories import (
    DECIMAL_HIGH,
    DECIMAL_LOW,
    DECIMAL_VALUE,
    as_sent,
    client_for,
    confirm_basis,
    feed_kind,
    hl7_message,
    invalid_nhs_number,
    main_html,
    make_credential,
    next_nhs_number,
    partner,
    person,
)
from tests.fhirapi import body, fhir_get, partner_token

pytestmark = pytest.mark.django_db


def _observation() -> dict[str, Any]:
    return {
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}], "text": "Potassium"},
        "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": DECIMAL_VALUE, "unit": "mmol/L"},
        "referenceRange": [{"low": {"value": DECIMAL_LOW}, "high": {"value": DECIMAL_HIGH}}],
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
    bundle = BundleBuilder(person(number, key=f"d{number}"), "Z81001", "d").patient()
    bundle.add("Observation", _observation())
    message = feed_kind(
        make_credential(partner("Z81001"))[0], MessageKind.FHIR_JSON, as_sent(bundle.bundle())
    )
    assert message.status == "done", message.issues
    stored = _stored_text(number)
    assert '"value": 5.10' in stored
    assert '"value": 3.50' in stored
    assert '"value": 5.10' in stored.split('"high"')[1]  # 5.10E+0, as PostgreSQL writes it
    served = _served_text(client, number)
    assert '"value": 5.10' in served
    assert '"value": 3.50' in served


def _patient_of(number: str, key: str) -> dict[str, Any]:
    builder = BundleBuilder(person(number, key=f"{key}{number}"), "Z81001", key).patient()
    return dict(builder.entries[0]["resource"])


def test_an_ndjson_uploads_decimals_are_stored_as_sent() -> None:
    number = next_nhs_number()
    patient = _patient_of(number, "n")
    observation = {
        "resourceType": "Observation", "id": f"obs-{number}", **_observation(),
        "subject": {"reference": f"Patient/{patient['id']}"},
    }  # fmt: skip
    lines = b"\n".join(as_sent(resource) for resource in (patient, observation))
    message = feed_kind(make_credential(partner("Z81001"))[0], MessageKind.FHIR_NDJSON, lines)
    assert message.status == "done", message.issues
    stored = _stored_text(number)
    assert '"value": 5.10' in stored
    assert '"value": 3.50' in stored


def test_a_number_no_decimal_can_mean_refuses_its_entry_alone() -> None:
    # NaN, Infinity and numbers beyond a double's range were refused by validation as
    # infinite floats, entry by entry; so they still are, on every door (NDJSON writes
    # its lines into a Bundle again, where a float's infinity would have become null
    # and been dropped, leaving a result with no value). The other entries are kept.
    number = next_nhs_number()
    patient = _patient_of(number, "x")
    subject = {"reference": f"Patient/{patient['id']}"}
    lines = [json.dumps(patient).encode()]
    for n, sent in enumerate(("NaN", "1e400", "-Infinity", "1e9999999999999999999", "5.10")):
        observation = {"resourceType": "Observation", "id": f"o{n}-{number}", **_observation(),
                       "subject": subject}  # fmt: skip
        lines.append(json.dumps(observation).replace(str(DECIMAL_VALUE), sent).encode())
    message = feed_kind(
        make_credential(partner("Z81001"))[0], MessageKind.FHIR_NDJSON, b"\n".join(lines)
    )
    assert message.status == "done", message.issues
    assert message.counts["rejected"] == 4, message.issues
    kept = Entry.objects.filter(patient__nhs_number=number, resource_type="Observation")
    assert [e.source_id for e in kept] == [f"o4-{number}"]
    assert '"value": 5.10' in _stored_text(number)


def test_a_huge_exponent_in_a_bundle_refuses_that_entry_not_the_message() -> None:
    number = next_nhs_number()
    bundle = BundleBuilder(person(number, key=f"h{number}"), "Z81001", "h").patient()
    bundle.add("Observation", _observation()).add("Condition", {"code": {"text": "Asthma"}})
    payload = as_sent(bundle.bundle()).replace(
        b'"value": 5.10,', b'"value": 1e9999999999999999999,'
    )
    message = feed_kind(make_credential(partner("Z81001"))[0], MessageKind.FHIR_JSON, payload)
    assert message.status == "done", message.issues
    assert message.counts["rejected"] == 1, message.issues
    kept = Entry.objects.filter(patient__nhs_number=number).values_list("resource_type", flat=True)
    assert set(kept) == {"Patient", "Condition"}


def test_an_opted_out_persons_entries_leave_a_waiting_message_with_the_rest_as_sent() -> None:
    staying, leaving = next_nhs_number(), next_nhs_number()
    bundle = BundleBuilder(person(staying, key=f"s{staying}"), "Z81001", "s").patient()
    bundle.add("Observation", _observation())
    other = BundleBuilder(person(leaving, key=f"l{leaving}"), "Z81001", "l").patient()
    both = {**bundle.bundle(), "entry": [*bundle.entries, *other.entries]}
    redacted = redact_person(as_sent(both), "json", leaving).decode()
    assert leaving not in redacted
    assert '"value":5.10' in redacted
    assert '"value":3.50' in redacted


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


def test_a_parked_entry_keeps_its_decimals() -> None:
    # An NHS number that fails its check digit parks the message's entries (for the
    # workbench, which files the resource it reads back), its result among them.
    number = invalid_nhs_number()
    message = feed_kind(make_credential(partner("ZAC01"))[0], MessageKind.HL7V2, _oru(number))
    assert message.status == "done", message.issues
    parked = MatchQueueItem.objects.get(message=message, resource_type="Observation")
    assert str(parked.resource["valueQuantity"]["value"]) == "5.10"
    assert str(parked.resource["referenceRange"][0]["low"]["value"]) == "3.50"
    assert not Patient.objects.filter(nhs_number=number).exists()


def test_a_resource_sent_again_unchanged_hashes_as_it_did_before_decimals_were_kept() -> None:
    # Content hashes decide whether a re-sent resource changed: one whose numbers read
    # the same as floats must hash as before (no mass re-update after an upgrade); one
    # sent with more precision is a change.
    text = (
        '{"resourceType": "Observation", "valueQuantity": {"value": 5.1, "n": 3}, "s": "é",'
        ' "small": [1e-07, 0.000001, 5e-05], "big": [100.0, 1.7976931348623157e308,'
        ' 123456789012345678901234567890], "zero": -0.0}'
    )
    before = hashlib.sha256(
        json.dumps(json.loads(text), sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert content_hash(fhirjson.loads(text)) == before
    more_precise = fhirjson.loads(text.replace("5.1", "5.10"))
    assert content_hash(more_precise) != before
    # A number is never taken for a string holding its digits.
    as_string = fhirjson.loads(text.replace("5.1", '"5.10"'))
    assert content_hash(as_string) != content_hash(more_precise)


def test_a_page_shows_a_decimal_with_the_digits_sent() -> None:
    # What reads a resource with its decimals hands the pages Decimals: they show them.
    assert number_shown(Decimal("5.10")) == "5.10"
    assert number_shown(Decimal("1E+2")) == "100"
    assert number_shown(Decimal("NaN")) == ""
    assert number_of(Decimal("5.10")) == 5.1


def _results_from(ods: str, number: str) -> Patient:
    """The person, with a result (and its range) sent by `ods` with its decimals as written."""
    bundle = BundleBuilder(person(number, key=f"p{number}"), ods, "p").patient()
    bundle.add("Observation", _observation())
    message = feed_kind(
        make_credential(partner(ods))[0], MessageKind.FHIR_JSON, as_sent(bundle.bundle())
    )
    assert message.status == "done", message.issues
    return Patient.objects.get(nhs_number=number)


def test_the_results_page_shows_a_result_with_the_digits_sent(registered_gp: Any) -> None:
    # The pages read the stored resource: 5.10 was read as the float 5.1 and shown so.
    patient = _results_from("Z81001", next_nhs_number())
    client = client_for(registered_gp)
    confirm_basis(client, patient)
    page = main_html(client.get(f"/record/{patient.public_id}/results"))
    assert "5.10 mmol/L" in page
    assert "5.1 mmol/L" not in page
    summary = main_html(client.get(f"/record/{patient.public_id}/"))
    assert "5.10 mmol/L" in summary


def test_an_undone_merge_puts_back_the_entries_it_ended_with_the_digits_sent() -> None:
    # A merge keeps the rows it ends in the operation (JSON), and its undo inserts them
    # again: through floats, the restored result said 5.1.
    number, survivor = next_nhs_number(), next_nhs_number()
    patient = _results_from("ZAC01", number)
    result = Entry.objects.get(patient=patient, resource_type="Observation")
    actor = AuditActor.system("decimals test")
    merged = patients_merge(
        from_nhs_number=number, to_nhs_number=survivor, source_org=result.source_org,
        blocked=False, actor=actor, retire=(("Observation", result.source_id),),
    )  # fmt: skip
    assert not Entry.objects.filter(pk=result.pk).exists()
    identity_operation_undo(operation=merged.operation, actor=actor)
    assert Entry.objects.get(pk=result.pk).patient.nhs_number == number
    stored = _stored_text(number)
    assert '"valueQuantity": {"unit": "mmol/L", "value": 5.10}' in stored
    assert '"low": {"value": 3.50}' in stored


def _xml_bundle(number: str) -> bytes:
    nhs = "https://fhir.nhs.uk/Id/nhs-number"
    return f"""<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/>
<entry><fullUrl value="urn:uuid:0c1d2e3f-4a5b-4c6d-8e7f-a1b2c3d4e5f6"/><resource><Patient>
<id value="x{number}"/><identifier><system value="{nhs}"/><value value="{number}"/></identifier>
<name><family value="ELLISON"/><given value="MARGARET"/></name><birthDate value="1941-03-14"/>
</Patient></resource></entry>
<entry><fullUrl value="urn:uuid:1c1d2e3f-4a5b-4c6d-8e7f-a1b2c3d4e5f6"/><resource><Observation>
<id value="xk{number}"/><status value="final"/><code><text value="Potassium"/></code>
<subject><reference value="urn:uuid:0c1d2e3f-4a5b-4c6d-8e7f-a1b2c3d4e5f6"/></subject>
<effectiveDateTime value="2026-11-20T09:00:00Z"/>
<valueQuantity><value value="5.10"/><unit value="mmol/L"/></valueQuantity>
<referenceRange><low><value value="3.50"/></low><high><value value="5.10E0"/></high></referenceRange>
<component><code><text value="Haemolysed"/></code><valueInteger value="0"/></component>
<component><code><text value="Volume"/></code><valueQuantity><value value="500"/></valueQuantity></component>
<component><code><text value="Trace"/></code><valueQuantity><value value="1E-400"/></valueQuantity></component>
</Observation></resource></entry></Bundle>""".encode()


def test_a_fhir_xml_bundles_decimals_are_stored_as_sent() -> None:
    # fhir.resources reads XML decimals with their digits, and writes one with a fraction
    # out as a float.
    number = next_nhs_number()
    message = feed_kind(
        make_credential(partner("ZAC01"))[0], MessageKind.FHIR_XML, _xml_bundle(number)
    )
    assert message.status == "done", message.issues
    stored = _stored_text(number)
    assert '"valueQuantity": {"unit": "mmol/L", "value": 5.10}' in stored
    assert '"low": {"value": 3.50}' in stored
    assert '"high": {"value": 5.10}' in stored
    assert '"value": 500}' in stored  # a whole number, as sent
    assert '"value": 0.0}' in stored  # beyond any decimal kept: as the model writes it
    assert '"valueInteger": 0' in stored


def test_an_xml_whole_number_stays_an_integer_with_its_content_hash() -> None:
    # A whole decimal is the text sent whether an int or a Decimal writes it; as a Decimal
    # it would hash anew and be stored again for nothing when next sent.
    xml = b"""<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/><entry>
<fullUrl value="urn:uuid:2c1d2e3f-4a5b-4c6d-8e7f-a1b2c3d4e5f6"/><resource><Observation>
<status value="final"/><code><text value="Volume"/></code>
<valueQuantity><value value="500"/><unit value="mL"/></valueQuantity></Observation></resource>
</entry></Bundle>"""
    (raw,) = raw_entries(xml, "xml")
    resource = validate(raw)
    assert type(resource["valueQuantity"]["value"]) is int
    as_before = json.dumps(resource, sort_keys=True, separators=(",", ":"))  # no Decimal in it
    assert content_hash(resource) == hashlib.sha256(as_before.encode()).hexdigest()
