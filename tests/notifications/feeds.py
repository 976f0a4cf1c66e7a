"""Synthetic feeds that carry every event kind, FHIR and HL7 v2 (999-range NHS numbers)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from ingestion.demo import PEOPLE, BundleBuilder
from tests.factories import DECIMAL_LOW, DECIMAL_VALUE, as_sent, hl7_message

V3 = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def _today(hours_ago: int = 1) -> str:
    return (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=hours_ago)).isoformat()


def builder(nhs_number: str, ods: str, key: str = "n1", gp_ods: str = "Z81001") -> BundleBuilder:
    someone = dataclasses.replace(PEOPLE[0], key=key, gp_ods=gp_ods, nhs_number_sent=nhs_number)
    return BundleBuilder(someone, ods, key).patient()


def encounter(klass: str, status: str, *, when: str | None = None) -> dict[str, Any]:
    return {
        "status": status,
        "class": {"system": V3, "code": klass},
        "period": {"start": when or _today()},
    }


def every_kind_bundle(
    nhs_number: str,
    ods: str,
    *,
    key: str = "n1",
    abnormal: bool = True,
    sensitive_flag: bool = False,
) -> dict[str, Any]:
    """A hospital's Bundle with an admission, an A&E visit, a result, a document, a plan, an alert."""
    b = builder(nhs_number, ods, key)
    b.add("Encounter", encounter("IMP", "in-progress"))
    b.add("Encounter", encounter("EMER", "finished"))
    b.add(
        "Observation",
        {
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
            "valueQuantity": {"value": 6.4, "unit": "mmol/L"},
            "interpretation": [
                {"coding": [{"system": INTERPRETATION, "code": "H" if abnormal else "N"}]}
            ],
            "effectiveDateTime": _today(),
        },
    )
    b.add(
        "DiagnosticReport",
        {
            "status": "final",
            "code": {"text": "Urea and electrolytes"},
            "effectiveDateTime": _today(),
        },
    )
    b.add(
        "DocumentReference",
        {
            "status": "current",
            "type": {"text": "Discharge summary"},
            "date": _today(),
            "content": [{"attachment": {"contentType": "text/plain", "data": "U3VtbWFyeQ=="}}],
        },
    )
    b.add(
        "CarePlan",
        {
            "status": "active",
            "intent": "plan",
            "title": "Falls prevention",
            "period": {"start": _today()},
        },
    )
    flag: dict[str, Any] = {
        "status": "active",
        "code": {"text": "Risk of falls"},
        "period": {"start": _today()},
    }
    if sensitive_flag:
        flag["meta"] = {
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
            ]
        }
    b.add("Flag", flag)
    return b.bundle()


def deceased_bundle(nhs_number: str, ods: str, key: str = "n1") -> dict[str, Any]:
    b = builder(nhs_number, ods, key)
    b.entries[0]["resource"]["deceasedDateTime"] = _today(2)
    return b.bundle()


def hl7_adt(
    nhs_number: str, event: str, *, patient_class: str, control_id: str, visit: str = "V2001"
) -> bytes:
    text = hl7_message(nhs_number, control_id=control_id, event=event, visit=visit)
    return text.replace("PV1|1|E|", f"PV1|1|{patient_class}|").encode()


def hl7_oru(nhs_number: str, *, control_id: str, flag: str = "H") -> bytes:
    ids = f"{nhs_number}^^^NHS^NH"
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
    return (
        "\r".join(
            [
                f"MSH|^~\\&|LAB|ZAC01|SHAREDRECORD|BOROUGH|{stamp}||ORU^R01|{control_id}|P|2.4",
                f"PID|1||{ids}||ELLISON^MARGARET^^^MRS||19410314|F",
                f"OBR|1||LAB{control_id}|U&E^Urea and electrolytes^L|||{stamp}||||||||||||||||||F",
                f"OBX|1|NM|K^Potassium^L||6.4|mmol/L|3.5-5.3|{flag}|||F|||{stamp}",
            ]
        ).encode()
        + b"\r"
    )


def hl7_mdm(nhs_number: str, *, control_id: str) -> bytes:
    ids = f"{nhs_number}^^^NHS^NH"
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
    return (
        "\r".join(
            [
                f"MSH|^~\\&|EPR|ZAC01|SHAREDRECORD|BOROUGH|{stamp}||MDM^T02|{control_id}|P|2.4",
                f"EVN|T02|{stamp}",
                f"PID|1||{ids}||ELLISON^MARGARET^^^MRS||19410314|F",
                "PV1|1|I",
                f"TXA|1|DS^Discharge summary|TX|{stamp}||||||||DOC{control_id}||||||AU",
                "OBX|1|TX|DS^Discharge summary||Discharged home.||||||F",
            ]
        ).encode()
        + b"\r"
    )


def hl7_death(nhs_number: str, *, control_id: str) -> bytes:
    """ADT^A08 whose PID-29/30 say the person died (an outpatient visit: no other event)."""
    text = hl7_message(nhs_number, control_id=control_id, event="A08", visit="V-DEATH")
    died = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=3)).strftime(
        "%Y%m%d%H%M"
    )
    lines = [
        line + "|" * 18 + f"{died}|Y" if line.startswith("PID|") else line
        for line in text.split("\r")
    ]
    return "\r".join(lines).replace("PV1|1|E|", "PV1|1|O|").encode()


def report_with_decimals(nhs_number: str, *, ods: str = "ZAC01", key: str = "d1") -> bytes:
    """A hospital's abnormal report holding its potassium, sent as 5.10 (from 3.50): JSON text.

    The report is the notification's focus, so its contained result travels with it.
    """
    b = builder(nhs_number, ods, key)
    potassium = {
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
        "valueQuantity": {"value": DECIMAL_VALUE, "unit": "mmol/L"},
        "referenceRange": [{"low": {"value": DECIMAL_LOW}, "high": {"value": 5.3}}],
        "interpretation": [{"coding": [{"system": INTERPRETATION, "code": "H"}]}],
        "effectiveDateTime": _today(),
    }
    b.add("Observation", potassium)  # in the batch: the report is abnormal
    b.add(
        "DiagnosticReport",
        {
            "status": "final",
            "code": {"text": "Urea and electrolytes"},
            "effectiveDateTime": _today(),
            "contained": [{"resourceType": "Observation", "id": "k", **potassium}],
            "result": [{"reference": "#k"}],
        },
    )
    return as_sent(b.bundle())
