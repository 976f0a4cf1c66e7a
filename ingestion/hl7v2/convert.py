"""Convert one HL7 v2 (ER7) message into the FHIR R4 entries the record already holds.

Pure, like the FHIR parser (ingestion/fhir/): no ORM, no settings, no network. python-hl7
splits the message; the checks it does not make (MSH fields, dates, numeric
values, NHS numbers) are ours, and each problem names its segment and field
for the ACK's ERR segment, never the value.

Steps of `convert`:
1. Decode: drop a UTF-8 byte order mark, honour MSH-18 (UTF-8, 8859/1, ASCII;
   undeclared: UTF-8, else Windows-1252), make every segment end CR (senders
   use LF or CRLF).
2. Read MSH: field separator, encoding characters, MSH-9 type, MSH-10 control
   id, MSH-12 version. Anything wrong here is AR: we cannot take the message.
3. Map the message type to FHIR resources (Patient, Encounter, Observation,
   DiagnosticReport, Appointment, DocumentReference) in a transaction Bundle
   with stable ids, so a later event about the same visit, order, appointment
   or document updates it. A11 (cancel admit) is a DELETE; A40 returns one
   merge per PID/MRG pair for the worker. Z-segments and segments we do not
   use are ignored.
4. Content problems (a bad date, a non-numeric NM value, an invalid NHS
   number, an oversized field) drop only the faulty part and are reported:
   the ACK is AE and everything else is kept.
"""

from __future__ import annotations

from typing import Any

from ingestion.hl7v2 import adt, mdm, oru, siu
from ingestion.hl7v2.datatypes import fhir_datetime, fhir_id
from ingestion.hl7v2.er7 import Message, decode, read_header, reject
from ingestion.hl7v2.results import Converted, Merge


def _meta(m: Message) -> dict[str, Any]:
    evn = m.first("EVN")
    when = (m.when(evn[0], "EVN", 1, 2) if evn else None) or fhir_datetime(m.header.sent_at)
    return {"lastUpdated": when} if when and "T" in when else {}


def convert(payload: bytes) -> Converted:
    """One ER7 message as a FHIR transaction Bundle; raises Hl7Rejected for AR."""
    if not payload.strip():
        raise reject("100", "The message is empty.", "", 0)
    text = decode(payload)
    header = read_header(text)
    m = Message(text, header)
    pid_found = m.first("PID")
    if pid_found is None:
        raise reject(
            "100",
            "The message has no PID segment: nobody to file it under.",
            "PID",
            0,
            header=header,
        )
    pd1 = None
    for name, segment, seq in m.segments:
        if name == "PID" and seq > 1:
            break  # a later A40 pair's PD1 belongs to its own person
        if name == "PD1":
            pd1 = segment
            break
    patient, _, patient_id = adt.patient(m, pid_found[0], pd1)
    patient_ref = f"Patient/{patient_id}"
    meta = _meta(m)
    entries: list[dict[str, Any]] = [patient]
    deletes: list[str] = []
    merges: list[Merge] = []
    event = header.event
    if header.message_type == "ADT":
        if event in ("A01", "A02", "A03", "A04", "A05", "A08", "A12", "A13"):
            encounter = adt.encounter(m, patient_ref, patient_id)
            if encounter:
                entries.append(encounter)
        elif event == "A11":
            encounter = adt.encounter(m, patient_ref, patient_id)
            if encounter:
                deletes.append(f"Encounter/{encounter['id']}")
        elif event == "A40":
            merges = adt.merges(m, patient, entries)
    elif header.message_type == "ORU":
        oru.results(m, patient_ref, entries)
    elif header.message_type == "SIU":
        appointment = siu.appointment(m, patient_ref)
        if appointment:
            entries.append(appointment)
    elif header.message_type == "MDM":
        document = mdm.document(m, patient_ref)
        if document:
            entries.append(document)
    bundle_entries: list[dict[str, Any]] = []
    for resource in entries:
        if meta:
            resource["meta"] = {**meta, **resource.get("meta", {})}
        bundle_entries.append(
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
        )
    for url in deletes:
        bundle_entries.append({"request": {"method": "DELETE", "url": url}})
    bundle = {
        "resourceType": "Bundle",
        "id": fhir_id("hl7", header.control_id),
        "type": "transaction",
        "entry": bundle_entries,
    }
    return Converted(header, bundle, m.problems, merges, len(bundle_entries))
