"""The official UK Core examples (XML) go through the feed as a UK sender would send them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from ingestion.fhir.profile import SUPPORTED
from sharedrecord.models import Entry, Patient
from tests.factories import EXTERNAL
from tests.ingestion.test_processing import codes, send

pytestmark = pytest.mark.django_db
NS = "http://hl7.org/fhir"
VALID = EXTERNAL / "ukcore-r4-examples" / "valid"


def _root(path: Path) -> etree._Element:
    return etree.fromstring(path.read_bytes())


def _xml_bundle(bundle_id: str, files: list[Path]) -> bytes:
    bundle = etree.Element(f"{{{NS}}}Bundle", nsmap={None: NS})
    etree.SubElement(bundle, f"{{{NS}}}id", value=bundle_id)
    etree.SubElement(bundle, f"{{{NS}}}type", value="collection")
    for path in files:
        resource = _root(path)
        kind = etree.QName(resource).localname
        rid = resource.find(f"{{{NS}}}id").get("value")
        entry = etree.SubElement(bundle, f"{{{NS}}}entry")
        etree.SubElement(entry, f"{{{NS}}}fullUrl", value=f"https://example.org/fhir/{kind}/{rid}")
        etree.SubElement(entry, f"{{{NS}}}resource").append(resource)
    return bytes(etree.tostring(bundle, xml_declaration=True, encoding="UTF-8"))


def _examples() -> tuple[dict[str, Path], list[tuple[Path, str, list[str]]]]:
    patients: dict[str, Path] = {}
    others = []
    for path in sorted(VALID.glob("*.xml")):
        resource = _root(path)
        kind = etree.QName(resource).localname
        if kind == "Patient":
            patients[resource.find(f"{{{NS}}}id").get("value")] = path
        elif kind in SUPPORTED:
            others.append(
                (path, kind, sorted(set(re.findall(r"Patient/([A-Za-z0-9.-]+)", path.read_text()))))
            )
    return patients, others


def test_every_supported_uk_core_example_ingests_with_its_patient(partner) -> None:
    patients, examples = _examples()
    assert len(examples) > 100
    filed = parked = unresolved = 0
    filed_keys: set[tuple[str, str]] = set()
    for n, (path, kind, refs) in enumerate(examples):
        with_patient = [patients[r] for r in refs if r in patients]
        receipt = send(
            partner,
            _xml_bundle(f"ukcore-{n}", [*with_patient, path]),
            content_type="application/fhir+xml",
        )
        assert receipt["status"] == "done", path.name
        if "UKCore-Patient-RichardSmith-Example" in refs:
            # 9912003888 passes Modulus 11: filed against Richard Smith.
            assert receipt["counts"]["rejected"] == 0, (path.name, codes(receipt))
            assert receipt["counts"]["created"] + receipt["counts"]["unchanged"] == 2, path.name
            filed += 1
            if "EnteredInError" in path.name:
                # Entered in error: removes the resource from the record, never files it.
                assert receipt["counts"]["created"] == 0, path.name
            else:
                filed_keys.add((kind, _root(path).find(f"{{{NS}}}id").get("value")))
        elif "UKCore-Patient-BabyPatient-Example" in refs:
            # 9912003890 fails the check digit: parked, never linked.
            assert receipt["counts"]["parked"] == 2, path.name
            assert codes(receipt)[0][0] == "parked-invalid-nhs-number"
            parked += 1
        else:
            # Refers to a patient that is not among the examples: said so, nothing guessed.
            assert codes(receipt) == [
                ("unresolved-patient", ["Bundle.entry[0]", f"{kind}.subject"])
            ], path.name
            unresolved += 1
    richard = Patient.objects.get(nhs_number="9912003888")
    assert (richard.family_name, richard.given_names) == (
        "SMITH",
        "Richard",
    )  # as the example spells it
    # Examples that share a type and id are one resource at the source: one entry.
    assert Entry.objects.filter(patient=richard).count() == len(filed_keys) + 1
    assert not Patient.objects.filter(nhs_number="9912003890").exists()
    assert (filed, parked, unresolved) == (101, 1, 9)
