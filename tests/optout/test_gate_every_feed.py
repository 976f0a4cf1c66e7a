"""The opt-out gate holds on every write path.

Parametrized over every MessageKind the platform accepts: a new feed type
(HL7 v2 when it lands) fails here until it has a sample message below and
the gate holds for it too.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from lxml import etree

from ingestion.models import MessageKind
from optout.models import OptOutRoute
from optout.services import optout_register
from sharedrecord.models import Entry, Patient
from tests.factories import feed_kind, hl7_message, make_credential, next_nhs_number, small_bundle

pytestmark = pytest.mark.django_db


def fhir_json(number: str) -> bytes:
    return json.dumps(small_bundle(number)).encode()


def fhir_xml(number: str) -> bytes:
    ns = "http://hl7.org/fhir"
    root = etree.Element(f"{{{ns}}}Bundle", nsmap={None: ns})
    etree.SubElement(root, f"{{{ns}}}id", value=f"xml-{number}")
    etree.SubElement(root, f"{{{ns}}}type", value="collection")
    entry = etree.SubElement(root, f"{{{ns}}}entry")
    etree.SubElement(
        entry, f"{{{ns}}}fullUrl", value="urn:uuid:6f0d4e1a-3b7e-4a62-9d8e-2b1f7c9a0e11"
    )
    patient = etree.SubElement(etree.SubElement(entry, f"{{{ns}}}resource"), f"{{{ns}}}Patient")
    etree.SubElement(patient, f"{{{ns}}}id", value=f"p{number}")
    identifier = etree.SubElement(patient, f"{{{ns}}}identifier")
    etree.SubElement(identifier, f"{{{ns}}}system", value="https://fhir.nhs.uk/Id/nhs-number")
    etree.SubElement(identifier, f"{{{ns}}}value", value=number)
    return bytes(etree.tostring(root))


def fhir_ndjson(number: str, key: str = "s1") -> bytes:
    """small_bundle's resources one a line, as Bulk Data sends them: `Patient/<id>` references."""
    resources = [entry["resource"] for entry in small_bundle(number, key=key)["entry"]]
    for resource in resources[1:]:
        resource["subject"] = {"reference": f"Patient/{resources[0]['id']}"}
    return "\n".join(json.dumps(resource) for resource in resources).encode()


def hl7v2(number: str) -> bytes:
    return hl7_message(number, control_id=f"gate-{number}").encode()


SAMPLES: dict[MessageKind, Callable[[str], bytes]] = {
    MessageKind.FHIR_JSON: fhir_json,
    MessageKind.FHIR_XML: fhir_xml,
    MessageKind.HL7V2: hl7v2,
    MessageKind.FHIR_NDJSON: fhir_ndjson,
}


@pytest.mark.parametrize("kind", list(MessageKind))
def test_nothing_is_stored_for_an_opted_out_person_by_any_feed(
    practice, practice_gp, kind: str
) -> None:
    assert kind in SAMPLES, f"{kind} has no sample message: add one so the gate is tested for it"
    number = next_nhs_number()
    credential, _ = make_credential(practice)
    # The sample really stores something when the person has not opted out...
    stored = feed_kind(credential, MessageKind(kind), SAMPLES[MessageKind(kind)](number))
    assert stored.counts["created"] >= 1
    optout_register(
        nhs_number=number,
        practice=practice,
        route=OptOutRoute.PRACTICE_REQUEST,
        recorded_by=practice_gp,
    )
    # ...and nothing once they have.
    again = small_bundle(number, key="again")
    payload = {
        "fhir-xml": SAMPLES[MessageKind.FHIR_XML](number).replace(b"xml-", b"again-"),
        "hl7v2": hl7v2(number).replace(b"gate-", b"again-"),
        "fhir-ndjson": fhir_ndjson(number, key="again"),
    }.get(kind, json.dumps(again).encode())
    blocked = feed_kind(credential, MessageKind(kind), payload)
    assert blocked.counts["blocked"] >= 1
    assert blocked.counts["created"] == 0
    assert not Patient.objects.filter(nhs_number=number).exists()
    assert not Entry.objects.filter(patient__nhs_number=number).exists()
