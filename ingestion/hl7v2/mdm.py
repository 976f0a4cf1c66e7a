"""MDM^T02 documents: the DocumentReference and its attachment."""

from __future__ import annotations

import base64
import re
from typing import Any

from ingestion.hl7v2.datatypes import fhir_id
from ingestion.hl7v2.er7 import Message

DOCUMENT_TYPES = {
    "DS": "Discharge summary",
    "CN": "Consultation note",
    "OP": "Operative report",
    "PN": "Procedure note",
    "HP": "History and physical",
    "TS": "Transfer summary",
    "CD": "Clinic letter",
    "RD": "Radiology report",
    "PR": "Progress note",
}


def document(m: Message, patient_ref: str) -> dict[str, Any] | None:
    """The DocumentReference from TXA and its OBX text, or None with a problem."""
    found = m.first("TXA")
    if found is None:
        m.problem("TXA", 1, 0, "100", "MDM^T02 needs a TXA segment; no document was stored.")
        return None
    txa, _ = found
    key = m.get(txa, 12) or m.get(txa, 16) or m.header.control_id
    kind = m.get(txa, 2).upper()
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": fhir_id("doc", key),
        "status": "current",
        "type": {"text": DOCUMENT_TYPES.get(kind, kind or "Document")},
        "subject": {"reference": patient_ref},
    }
    if kind in DOCUMENT_TYPES:
        resource["type"]["coding"] = [
            {
                "code": kind,
                "display": DOCUMENT_TYPES[kind],
                "system": "http://terminology.hl7.org/CodeSystem/v2-0270",
            }
        ]
    doc_status = m.get(txa, 17).upper()
    if doc_status in ("AU", "LA"):
        resource["docStatus"] = "final"
    elif doc_status in ("IP", "IN", "PA", "DI", "DO"):
        resource["docStatus"] = "preliminary"
    when = m.when(txa, "TXA", 1, 4) or m.when(txa, "TXA", 1, 6)
    if when and "T" in when:
        resource["date"] = when
    lines: list[str] = []
    attachment: dict[str, Any] | None = None
    for segment, seq in m.all("OBX"):
        kind = m.get(segment, 2).upper()
        if kind == "ED":
            parts = m.comps(m.reps(segment, 5)[0]) if m.reps(segment, 5) else []
            parts += [""] * 5
            mime = (
                f"{parts[1]}/{parts[2]}".lower()
                if parts[1] and parts[2]
                else "application/octet-stream"
            )
            data = re.sub(r"\s", "", parts[4])
            if not data:
                m.problem("OBX", seq, 5, "101", "OBX-5 (encapsulated data) is empty.", severity="W")
                continue
            try:
                base64.b64decode(data, validate=True)
            except ValueError:
                m.problem("OBX", seq, 5, "102", "OBX-5 (encapsulated data) is not valid Base64.")
                continue
            attachment = {"contentType": mime, "data": data, "title": resource["type"]["text"]}
        elif kind == "RP":
            url = m.get(segment, 5)
            if url:
                attachment = {"url": url[:500], "title": resource["type"]["text"]}
        elif kind in ("TX", "FT", "ST"):
            lines.append(
                m.long_text("OBX", seq, 5, "\n".join(m.text(v) for v in m.reps(segment, 5)))
            )
    body = "\n".join(lines)
    if attachment is None and not body:
        m.problem(
            "OBX",
            1,
            5,
            "101",
            "The document has no content (OBX-5); its details are kept.",
            severity="W",
        )
        attachment = {"title": resource["type"]["text"]}
    if attachment is None:
        attachment = {
            "contentType": "text/plain; charset=utf-8",
            "title": resource["type"]["text"],
            "data": base64.b64encode(body.encode()).decode(),
        }
    resource["content"] = [{"attachment": attachment}]
    return resource
