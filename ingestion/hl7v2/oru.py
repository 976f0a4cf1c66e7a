"""ORU^R01 results: one DiagnosticReport per OBR, one Observation per OBX under it."""

from __future__ import annotations

import base64
from typing import Any

from ingestion.hl7v2.datatypes import coded_concept, fhir_id, numeric, numeric_range
from ingestion.hl7v2.er7 import Message

RESULT_STATUS = {
    "F": "final",
    "C": "corrected",
    "P": "preliminary",
    "X": "cancelled",
    "R": "preliminary",
    "I": "registered",
    "S": "partial",
    "D": "entered-in-error",
    "W": "entered-in-error",
    "A": "partial",
    "U": "final",
}
INTERPRETATIONS = {"H", "HH", "L", "LL", "A", "AA", "N", "<", ">", "POS", "NEG", "S", "R", "I"}


def _observation(
    m: Message, obx: Any, seq: int, report_id: str, patient_ref: str, fallback_when: str | None
) -> dict[str, Any] | None:
    kind = m.get(obx, 2).upper()
    code = coded_concept(m, m.reps(obx, 3)[0]) if m.reps(obx, 3) else None
    if code is None:
        m.problem(
            "OBX",
            seq,
            3,
            "101",
            "OBX-3 (observation identifier) is missing; the result was not kept.",
        )
        return None
    status = RESULT_STATUS.get(m.get(obx, 11).upper(), "final")
    set_id = m.get(obx, 1) or str(seq)
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": fhir_id("obs", report_id, set_id, m.get(obx, 4)),
        "status": status,
        "code": code,
        "subject": {"reference": patient_ref},
    }
    values = m.reps(obx, 5)
    if kind in ("NM", "SN"):
        quantity = numeric(m, obx, seq) if values else None
        if quantity:
            resource["valueQuantity"] = quantity
    elif kind in ("CE", "CWE", "CNE", "CF") and values:
        concept = coded_concept(m, values[0])
        if concept:
            resource["valueCodeableConcept"] = concept
    elif values:
        text = "\n".join(m.text(v) for v in values)
        text = m.long_text("OBX", seq, 5, text)
        if text:
            resource["valueString"] = text
    reference = numeric_range(m.get(obx, 7))
    if reference:
        resource["referenceRange"] = [reference]
    flags = [f for f in (m.comps(r)[0].strip().upper() for r in m.reps(obx, 8)) if f]
    if flags:
        resource["interpretation"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": f,
                    }
                ]
            }
            if f in INTERPRETATIONS
            else {"text": f[:40]}
            for f in flags[:3]
        ]
    when = m.when(obx, "OBX", seq, 14) or fallback_when
    if when:
        resource["effectiveDateTime"] = when
    return resource


def results(m: Message, patient_ref: str, entries: list[dict[str, Any]]) -> None:
    """ORU^R01: one DiagnosticReport per OBR, one Observation per OBX under it."""
    report: dict[str, Any] | None = None
    text_lines: list[str] = []
    order = 0

    def close() -> None:
        if report is None:
            return
        if any(text_lines):
            body = "\n".join(line for line in text_lines if line)
            report["conclusion"] = body[:2000]
            report["presentedForm"] = [
                {"contentType": "text/plain", "data": base64.b64encode(body.encode()).decode()}
            ]

    for name, segment, seq in m.segments:
        if name == "OBR":
            close()
            order += 1
            filler, placer = m.get(segment, 3), m.get(segment, 2)
            report_id = fhir_id(
                "dr",
                filler or placer or m.header.control_id,
                "" if (filler or placer) else str(order),
            )
            code = coded_concept(m, m.reps(segment, 4)[0]) if m.reps(segment, 4) else None
            report = {
                "resourceType": "DiagnosticReport",
                "id": report_id,
                "status": RESULT_STATUS.get(m.get(segment, 25).upper(), "final"),
                "code": code or {"text": "Result"},
                "subject": {"reference": patient_ref},
            }
            when = m.when(segment, "OBR", seq, 7)
            if when:
                report["effectiveDateTime"] = when
            text_lines = []
            entries.append(report)
        elif name == "OBX":
            if report is None:
                # Patient-level observations (before any OBR): kept, outside a report.
                observation = _observation(
                    m, segment, seq, fhir_id("msg", m.header.control_id), patient_ref, None
                )
                if observation:
                    entries.append(observation)
                continue
            if m.get(segment, 2).upper() in ("TX", "FT") and not m.get(segment, 7):
                # Report text: its lines become the report's text, not separate results.
                lines = "\n".join(m.text(v) for v in m.reps(segment, 5))
                text_lines.append(m.long_text("OBX", seq, 5, lines))
                continue
            observation = _observation(
                m, segment, seq, str(report["id"]), patient_ref, report.get("effectiveDateTime")
            )
            if observation:
                entries.append(observation)
                report.setdefault("result", []).append(
                    {"reference": f"Observation/{observation['id']}"}
                )
    close()
    if order == 0:
        m.problem("OBR", 1, 0, "100", "ORU^R01 needs an OBR segment; no result was stored.")
