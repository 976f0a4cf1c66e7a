"""Test data builders. Personal data here is synthetic (999-range NHS numbers)."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import itertools
import json
from pathlib import Path
from typing import Any

from ingestion.credentials import feed_credential_issue
from ingestion.demo import PEOPLE, BundleBuilder, DemoPerson, gp_summary, synthetic_nhs_number
from ingestion.models import FeedCredential
from sharedrecord.models import Organisation, OrganisationKind, Patient

BASE_DIR = Path(__file__).resolve().parent.parent
EXTERNAL = BASE_DIR.parent / "shared" / "fixtures" / "external"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
_serial = itertools.count(500)


def next_nhs_number() -> str:
    return synthetic_nhs_number(next(_serial) * 3)


def make_organisation(**overrides: Any) -> Organisation:
    n = next(_serial)
    values: dict[str, Any] = {
        "ods_code": f"ZT{n:04d}",
        "name": f"Test organisation {n}",
        "kind": OrganisationKind.ACUTE,
        "dsa_start": datetime.date(2025, 1, 1),
    }
    values.update(overrides)
    return Organisation.objects.create(**values)


def make_credential(organisation: Organisation | None = None) -> tuple[FeedCredential, str]:
    return feed_credential_issue(organisation=organisation or make_organisation(), system="EPR")


def make_patient(**overrides: Any) -> Patient:
    values: dict[str, Any] = {"nhs_number": next_nhs_number(), "family_name": "Testperson"}
    values.update(overrides)
    return Patient.objects.create(**values)


def person(nhs_number: str, key: str = "t1", gp_ods: str = "Z81001") -> DemoPerson:
    """A synthetic person whose feeds carry the given NHS number."""
    return dataclasses.replace(PEOPLE[0], key=key, gp_ods=gp_ods, nhs_number_sent=nhs_number)


def gp_bundle(nhs_number: str, *, key: str = "t1", gp_ods: str = "Z81001") -> dict[str, Any]:
    """A GP practice's summary Bundle for one synthetic person."""
    return gp_summary(person(nhs_number, key=key, gp_ods=gp_ods))


def small_bundle(nhs_number: str | None, *, key: str = "s1") -> dict[str, Any]:
    """A Patient and one Condition: the smallest useful message."""
    builder = BundleBuilder(person(nhs_number or "", key=key), "ZT", key).patient()
    if nhs_number is None:
        builder.entries[0]["resource"].pop("identifier")
    builder.add(
        "Condition",
        {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}},
    )
    return builder.bundle()


def with_nhs_number(bundle: dict[str, Any], number: str) -> dict[str, Any]:
    """A copy of a bundle whose Patient carries an NHS number, as a UK source would send it."""
    bundle = copy.deepcopy(bundle)
    for entry in bundle["entry"]:
        resource = entry.get("resource", {})
        if resource.get("resourceType") == "Patient":
            resource.setdefault("identifier", []).insert(0, {"system": NHS, "value": number})
    return bundle


def external_json(*parts: str) -> dict[str, Any]:
    return dict(json.loads((EXTERNAL.joinpath(*parts)).read_text()))


def synthea_files() -> list[Path]:
    return sorted(
        p for p in (EXTERNAL / "synthea-smart-r4").glob("*.json") if p.name != "MANIFEST.json"
    )


HL7_DIRS = (EXTERNAL / "hl7v2-ms-fhir-converter", EXTERNAL / "hl7v2-cdc-trusted-intermediary")


def hl7_message(
    nhs_number: str | None,
    *,
    control_id: str = "C1",
    event: str = "A01",
    visit: str = "V1001",
    family: str = "ELLISON",
    given: str = "MARGARET",
    birth: str = "19410314",
    body: str = "",
    charset: str = "",
) -> str:
    """A UK-style ADT message (v2.4) for a synthetic person, CR-separated."""
    ids = f"{nhs_number}^^^NHS^NH~M{visit}^^^ZAC01^MR" if nhs_number else f"M{visit}^^^ZAC01^MR"
    msh = (
        f"MSH|^~\\&|PAS|ZAC01|SHAREDRECORD|BOROUGH|20261120101500||ADT^{event}|{control_id}|P|2.4"
        + (f"||||||{charset}" if charset else "")
    )
    segments = [
        msh,
        f"EVN|{event}|20261120101500",
        f"PID|1||{ids}||{family}^{given}^^^MRS||{birth}|F|||4 MILL LANE^^BOROUGH TOWN^^ZZ1 1AA",
        "PD1|||RIVERSIDE MEDICAL PRACTICE^^Z81001",
        f"PV1|1|E|ED^MAJORS^BAY 3||||||||||||||||{visit}|||||||||||||||||||||||||20261120094500"
        + ("|20261120160000" if event == "A03" else ""),
    ]
    if body:
        segments.append(body)
    return "\r".join(segments) + "\r"


def hl7_fixture(name: str) -> bytes:
    for folder in HL7_DIRS:
        path = folder / name
        if path.exists():
            return path.read_bytes()
    raise FileNotFoundError(name)


def hl7_with_nhs_number(payload: bytes, number: str) -> bytes:
    """The message with an NHS number added to PID-3, as a UK sender would send it."""
    text = payload.decode("utf-8-sig", errors="replace").replace("\r\n", "\r").replace("\n", "\r")
    segments = text.split("\r")
    for i, segment in enumerate(segments):
        if segment.startswith("PID"):
            fields = segment.split("|")
            while len(fields) < 4:
                fields.append("")
            fields[3] = f"{number}^^^NHS^NH" + (f"~{fields[3]}" if fields[3] else "")
            segments[i] = "|".join(fields)
    return "\r".join(segments).encode()


def hl7_with_control_id(payload: bytes, control_id: str) -> bytes:
    """The message under a new MSH-10: the same id with different content is refused."""
    first, rest = payload.decode("utf-8", errors="replace").split("\r", 1)
    fields = first.split("|")
    fields[9] = control_id
    return ("|".join(fields) + "\r" + rest).encode()
