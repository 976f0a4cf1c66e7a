"""SIU scheduling messages (S12-S15): the Appointment."""

from __future__ import annotations

from typing import Any

from ingestion.hl7v2.datatypes import coded_concept, fhir_id
from ingestion.hl7v2.er7 import Message


def appointment(m: Message, patient_ref: str) -> dict[str, Any] | None:
    """The Appointment from SCH (and TQ1, AIS), or None with a problem when SCH is missing."""
    found = m.first("SCH")
    if found is None:
        m.problem("SCH", 1, 0, "100", "SIU needs an SCH segment; no appointment was stored.")
        return None
    sch, _ = found
    key = m.get(sch, 2) or m.get(sch, 1)
    if not key:
        m.problem("SCH", 1, 2, "101", "SCH-2 or SCH-1 (appointment id) is missing.")
        return None
    start = m.when(sch, "SCH", 1, 11, 4)
    end = m.when(sch, "SCH", 1, 11, 5)
    tq1 = m.first("TQ1")
    if tq1 is not None:
        start = m.when(tq1[0], "TQ1", 1, 7) or start
        end = m.when(tq1[0], "TQ1", 1, 8) or end
    ais = m.first("AIS")
    if ais is not None and not start:
        start = m.when(ais[0], "AIS", 1, 4)
    status = "cancelled" if m.header.event == "S15" else "booked"
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": fhir_id("appt", key),
        "status": status,
        "participant": [{"actor": {"reference": patient_ref}, "status": "accepted"}],
    }
    service = (
        coded_concept(m, m.reps(ais[0], 3)[0]) if ais is not None and m.reps(ais[0], 3) else None
    )
    reason = coded_concept(m, m.reps(sch, 7)[0]) if m.reps(sch, 7) else None
    if service:
        resource["serviceType"] = [service]
    if reason:
        resource["reasonCode"] = [reason]
    if start and "T" in start:
        resource["start"] = start
        if end and "T" in end and end >= start:
            resource["end"] = end
        elif end:
            m.problem("SCH", 1, 11, "102", "The appointment ends before it starts.")
    elif status != "cancelled":
        m.problem(
            "SCH",
            1,
            11,
            "101",
            "The appointment has no start time; it was kept without one.",
            severity="W",
        )
    if "start" in resource and "end" not in resource:
        resource["end"] = resource["start"]  # FHIR: booked appointments need both
    if status == "booked" and "start" not in resource:
        resource["status"] = "proposed"
    return resource
