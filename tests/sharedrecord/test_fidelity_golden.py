"""Clinical fidelity over the public fixtures: every rendered item against its source.

Three Synthea patients (one deceased, two with allergies and care plans) and
every UK Core example about Richard Smith go through the real feed; a GP
reads every section. Each item's row is compared two ways:
1. with its source resource, by an oracle written here (title, date with its
   precision and in UK time, status qualifier, result value and unit);
2. with the golden file tests/sharedrecord/golden/<fixture>.txt, which holds
   every row as reviewed. A change to what any item shows fails here until
   the golden file is regenerated (FIDELITY_GOLDEN_UPDATE=1) and the diff
   reviewed like code.
"""

from __future__ import annotations

import html
import json
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from lxml import etree

from ingestion.fhir.profile import EFFECTIVE_PATHS, SUPPORTED
from ingestion.models import MessageKind
from sharedrecord.models import Entry, Patient, RecordSection
from sharedrecord.presentation.types import TYPES
from tests.factories import (
    EXTERNAL,
    feed_kind,
    make_credential,
    next_nhs_number,
    partner,
    with_nhs_number,
)
from tests.sharedrecord.fidelity import date_oracle, page, qualifier_for, send

pytestmark = pytest.mark.django_db

GOLDEN = Path(__file__).parent / "golden"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SYNTHEA = {
    "synthea-deceased": "Lyndia_Bergstrom",
    "synthea-allergies": "Judson_Eichmann",
    "synthea-care-plans": "Patria_Schimmel",
}
NS = "http://hl7.org/fhir"
UK_CORE = EXTERNAL / "ukcore-r4-examples" / "valid"
RICHARD = "UKCore-Patient-RichardSmith-Example"
CLAIM = "Reviewing the shared record for the clinical safety case"


def synthea(name: str) -> dict[str, Any]:
    (path,) = (EXTERNAL / "synthea-smart-r4").glob(f"{name}_*.json")
    return dict(json.loads(path.read_text()))


def synthea_person(key: str) -> Patient:
    """A Synthea bundle as a GP practice would send it: an NHS number, the practice named."""
    bundle = with_nhs_number(synthea(SYNTHEA[key]), next_nhs_number())
    bundle["entry"] = [
        e for e in bundle["entry"] if e["resource"]["resourceType"] in SUPPORTED
    ]  # billing and directory resources are not part of a care record
    for entry in bundle["entry"]:
        entry.pop("request", None)
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"]["generalPractitioner"] = [
                {"identifier": {"system": ODS, "value": "Z81001"}}
            ]
    bundle["type"] = "collection"
    bundle["id"] = key
    return send(bundle, "Z81001")


def uk_core_person() -> Patient:
    """Richard Smith and every UK Core example about him, in one XML Bundle."""
    chosen: dict[tuple[str, str], Path] = {}
    for path in sorted(UK_CORE.glob("*.xml")):
        resource = etree.fromstring(path.read_bytes())
        kind = etree.QName(resource).localname
        about = f"Patient/{RICHARD}" in path.read_text()
        if kind in SUPPORTED and kind != "Patient" and about and "EnteredInError" not in path.name:
            chosen[(kind, resource.find(f"{{{NS}}}id").get("value"))] = path
    bundle = etree.Element(f"{{{NS}}}Bundle", nsmap={None: NS})
    etree.SubElement(bundle, f"{{{NS}}}id", value="ukcore-golden")
    etree.SubElement(bundle, f"{{{NS}}}type", value="collection")
    for path in [UK_CORE / f"{RICHARD}.xml", *chosen.values()]:
        resource = etree.fromstring(path.read_bytes())
        kind = etree.QName(resource).localname
        rid = resource.find(f"{{{NS}}}id").get("value")
        entry = etree.SubElement(bundle, f"{{{NS}}}entry")
        etree.SubElement(entry, f"{{{NS}}}fullUrl", value=f"https://example.org/fhir/{kind}/{rid}")
        etree.SubElement(entry, f"{{{NS}}}resource").append(resource)
    # From the registered practice's own system, so every item is the GP's own to see.
    credential, _ = make_credential(partner("Z81001"))
    message = feed_kind(credential, MessageKind.FHIR_XML, etree.tostring(bundle))
    assert message.status == "done", message.issues
    assert message.counts["rejected"] == 0, message.issues
    return Patient.objects.get(nhs_number="9912003888")


def _words(markup: str) -> str:
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())
    return re.sub(r" ([,.;:)])", r"\1", text)


def rows_of(client: Client, user: Any, patient: Patient, claim: str) -> dict[str, str]:
    """Every item of every section, as its row reads (without the source and update time)."""
    rows: dict[str, str] = {}
    for section in RecordSection.values:
        markup = page(client, user, patient, section, claim=claim)
        for found in re.finditer(r'<tr[^>]*data-entry="([0-9a-f-]{36})".*?</tr>', markup, re.S):
            cells = re.findall(r"<td[^>]*>(.*?)</td>", found.group(0), re.S)
            rows[found.group(1)] = " | ".join(_words(c) for c in cells[:2])
    return rows


def _get(resource: Any, path: str) -> Any:
    for part in path.split("."):
        index = None
        if part.endswith("]"):
            part, _, rest = part.partition("[")
            index = int(rest[:-1])
        resource = resource.get(part) if isinstance(resource, dict) else None
        if index is not None:
            resource = (
                resource[index] if isinstance(resource, list) and len(resource) > index else None
            )
    return resource


def _concept_words(concept: Any) -> str:
    if isinstance(concept, list):
        concept = concept[0] if concept else None
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"]).strip()
    codings = concept.get("coding") or []
    return str(codings[0].get("display") or codings[0].get("code") or "") if codings else ""


TITLE_ELEMENTS = {
    "MedicationStatement": "medicationCodeableConcept", "MedicationRequest": "medicationCodeableConcept",
    "Immunization": "vaccineCode", "Encounter": "type", "DocumentReference": "type",
    "Appointment": "serviceType",
}  # fmt: skip


def source_says(entry: Entry) -> list[str]:
    """What a clinician must read on this item's row, worked out from its source alone."""
    resource, kind = entry.resource, entry.resource_type
    says = []
    if title := _concept_words(resource.get(TITLE_ELEMENTS.get(kind, "code"))):
        says.append(title)
    for path in EFFECTIVE_PATHS.get(kind, ()):
        if isinstance(when := _get(resource, path), str):
            says.append(date_oracle(when))
            break
    codes = [resource.get("status")] + [
        c.get("code")
        for element in ("verificationStatus", "clinicalStatus")
        for c in (resource.get(element) or {}).get("coding", [])
    ]
    says.extend(w for c in codes if isinstance(c, str) and (w := qualifier_for(kind, c)))
    quantities = [resource.get("valueQuantity")] + [
        c.get("valueQuantity") for c in resource.get("component", []) if isinstance(c, dict)
    ]
    for quantity in quantities:
        if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float | Decimal):
            value = quantity["value"]  # a Decimal as stored: the digits sent
            says.append(format(value, "f") if isinstance(value, Decimal) else str(value))
            says.append(str(quantity.get("unit") or "(no unit given)"))
    if isinstance(resource.get("valueCodeableConcept"), dict):
        says.append(_concept_words(resource["valueCodeableConcept"]))
    return [s for s in says if s]


@pytest.mark.parametrize("fixture", [*SYNTHEA, "ukcore-richard-smith"])
def test_every_item_of_the_public_fixtures_reads_as_its_source_says(
    client: Client, registered_gp, fixture: str
) -> None:
    if fixture == "ukcore-richard-smith":
        patient, claim = uk_core_person(), CLAIM
    else:
        patient, claim = synthea_person(fixture), ""
    rows = rows_of(client, registered_gp, patient, claim)
    entries = Entry.objects.filter(patient=patient).exclude(resource_type="Patient")
    assert entries.count() >= 20
    golden = []
    for entry in entries.order_by("resource_type", "source_id"):
        shown = rows.get(str(entry.public_id))
        assert shown is not None, f"{entry.resource_type}/{entry.source_id} is not shown"
        for text in source_says(entry):
            assert text in shown, (entry.resource_type, entry.source_id, text, shown)
        golden.append(f"{entry.resource_type}/{entry.source_id}: {shown}")
    path = GOLDEN / f"{fixture}.txt"
    if os.environ.get("FIDELITY_GOLDEN_UPDATE") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text("\n".join(golden) + "\n")
    expected = path.read_text().splitlines()
    assert golden == expected, "Rendering changed: review, then FIDELITY_GOLDEN_UPDATE=1"


def test_the_presentation_dates_each_type_as_ingestion_orders_it() -> None:
    """The date shown for an item is the one its entry is ordered by (same paths, same order)."""
    for kind, paths in EFFECTIVE_PATHS.items():
        assert TYPES[kind].when == paths, kind
    assert set(TYPES) == set(SUPPORTED)


def test_the_synthea_fixtures_are_the_ones_chosen() -> None:
    deceased = synthea(SYNTHEA["synthea-deceased"])
    (person,) = [
        e["resource"] for e in deceased["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    assert "deceasedDateTime" in person
    for key in ("synthea-allergies", "synthea-care-plans"):
        kinds = {e["resource"]["resourceType"] for e in synthea(SYNTHEA[key])["entry"]}
        assert {"AllergyIntolerance", "CarePlan"} <= kinds
