"""ADT messages: the person (PID, PD1), the visit (PV1) and A40 merges (MRG)."""

from __future__ import annotations

import re
from typing import Any

from nhs_number import is_valid as nhs_number_valid

from ingestion.hl7v2.datatypes import coded_concept, fhir_id
from ingestion.hl7v2.er7 import Message
from ingestion.hl7v2.results import Merge

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
# Identifier types and assigning authorities that mark an NHS number in PID-3.
NHS_ID_TYPES = frozenset({"NH", "NHS", "NHSNMBR", "NHSNBR"})
NHS_AUTHORITIES = frozenset({"NHS", "NHSNBR", "NHS NUMBER", "2.16.840.1.113883.2.1.4.1"})
PATIENT_CLASS = {
    "E": ("EMER", "emergency"),
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "P": ("PRENC", "pre-admission"),
    "R": ("AMB", "ambulatory"),
    "B": ("AMB", "ambulatory"),
    "N": ("AMB", "ambulatory"),
}


def _nhs_numbers(m: Message, pid: Any, seq: int = 1) -> tuple[str, list[dict[str, Any]], str]:
    """(NHS number or "", other identifiers, the sender's own patient id) from PID-3 and PID-2."""
    nhs = ""
    others: list[dict[str, Any]] = []
    local = ""
    for n in (3, 2):
        for rep in m.reps(pid, n):
            parts = m.comps(rep) + [""] * 5
            value, authority, id_type = parts[0].strip(), parts[3].strip(), parts[4].strip()
            if not value:
                continue
            authority_id = authority.upper()
            if id_type.upper() in NHS_ID_TYPES or authority_id in NHS_AUTHORITIES:
                digits = value.replace(" ", "")
                if not (digits.isdigit() and len(digits) == 10 and nhs_number_valid(digits)):
                    m.problem(
                        "PID",
                        seq,
                        n,
                        "102",
                        f"PID-{n}: the NHS number is not a valid "
                        "10-digit number (Modulus 11); the message is held for review.",
                    )
                    nhs = nhs or digits[:20]  # kept so the worker parks it, never guesses
                    continue
                if nhs and nhs != digits:
                    m.problem("PID", seq, n, "102", f"PID-{n} holds two different NHS numbers.")
                    continue
                nhs = digits
            else:
                others.append(
                    {
                        "value": value[:64],
                        **({"type": {"text": id_type}} if id_type else {}),
                        **({"assigner": {"display": authority}} if authority else {}),
                    }
                )
                local = local or value
    return nhs, others, local


def patient(m: Message, pid: Any, pd1: Any | None, seq: int = 1) -> tuple[dict[str, Any], str, str]:
    """The Patient from a PID (and PD1) segment; also its NHS number and local id."""
    nhs, others, local = _nhs_numbers(m, pid, seq)
    resource_id = fhir_id("pt", local) if local else fhir_id("pt-nhs", nhs or m.header.control_id)
    identifiers = [{"system": NHS_NUMBER_SYSTEM, "value": nhs}] if nhs else []
    identifiers += others[:5]
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id}
    if identifiers:
        resource["identifier"] = identifiers
    names: list[dict[str, Any]] = []
    for rep in m.reps(pid, 5)[:3]:
        parts = m.comps(rep) + [""] * 6
        family, given, middle, _, prefix = parts[0], parts[1], parts[2], parts[3], parts[4]
        if family or given:
            name: dict[str, Any] = {"use": "official" if not names else "usual"}
            if family:
                name["family"] = family.strip()[:200]
            if given or middle:
                name["given"] = [g.strip()[:100] for g in (given, middle) if g.strip()]
            if prefix.strip():
                name["prefix"] = [prefix.strip()[:20]]
            names.append(name)
    if names:
        resource["name"] = names
    birth = m.when(pid, "PID", seq, 7)
    if birth:
        resource["birthDate"] = birth[:10]
    sex = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "unknown"}
    if (gender := m.get(pid, 8).upper()) in sex:
        resource["gender"] = sex[gender]
    addresses = []
    for rep in m.reps(pid, 11)[:2]:
        parts = m.comps(rep) + [""] * 6
        line = [p.strip()[:200] for p in (parts[0], parts[1]) if p.strip()]
        address = {
            k: v
            for k, v in {
                "line": line,
                "city": parts[2].strip()[:100],
                "postalCode": parts[4].strip()[:10],
            }.items()
            if v
        }
        if address:
            addresses.append({"use": "home", **address})
    if addresses:
        resource["address"] = addresses
    if m.get(pid, 30).upper() == "Y":
        died = m.when(pid, "PID", seq, 29)
        if died:
            resource["deceasedDateTime"] = died
        else:
            resource["deceasedBoolean"] = True
    if pd1 is not None:
        # PD1-3: the patient's primary facility, in UK feeds the registered GP practice.
        practice = m.comps(m.reps(pd1, 3)[0]) if m.reps(pd1, 3) else []
        ods = next(
            (p for p in (practice[2:3] + practice[9:10]) if re.match(r"^[A-Z0-9]{3,8}$", p)), ""
        )
        if ods:
            resource["generalPractitioner"] = [
                {"identifier": {"system": ODS_SYSTEM, "value": ods}, "display": practice[0][:200]}
            ]
    return resource, nhs, resource_id


def encounter(m: Message, patient_ref: str, patient_id: str) -> dict[str, Any] | None:
    """The Encounter from PV1 (and the event), or None with a problem when PV1 is missing."""
    found = m.first("PV1")
    if found is None:
        m.problem("PV1", 1, 0, "100", "The event needs a PV1 segment; no encounter was stored.")
        return None
    pv1, _ = found
    visit = m.get(pv1, 19)
    admitted = m.when(pv1, "PV1", 1, 44)
    event = m.header.event
    key = visit or (admitted or "")
    if not key:
        m.problem(
            "PV1",
            1,
            19,
            "101",
            "PV1-19 (visit number) and PV1-44 (admit time) are "
            "missing: later events cannot update this encounter.",
            severity="W",
        )
        key = m.header.control_id
    klass = PATIENT_CLASS.get(m.get(pv1, 2).upper(), ("AMB", "ambulatory"))
    status = {"A03": "finished", "A05": "planned", "A11": "cancelled"}.get(event, "in-progress")
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": fhir_id("enc", visit or patient_id, "" if visit else key),
        "status": status,
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": klass[0],
            "display": klass[1],
        },
        "subject": {"reference": patient_ref},
    }
    if visit:
        encounter["identifier"] = [{"value": visit[:64]}]
    service = m.get(pv1, 10)
    if service:
        encounter["serviceType"] = {"text": service[:200]}
    period: dict[str, str] = {}
    if admitted:
        period["start"] = admitted
    discharged = m.when(pv1, "PV1", 1, 45) if event == "A03" else None
    if discharged:
        period["end"] = discharged
    if period.get("start") and period.get("end") and period["end"] < period["start"]:
        m.problem("PV1", 1, 45, "102", "PV1-45 (discharge) is before PV1-44 (admit).")
        period.pop("end")
    if period:
        encounter["period"] = period
    location = m.comps(m.reps(pv1, 3)[0]) if m.reps(pv1, 3) else []
    where = ", ".join(p for p in location[:4] if p.strip())
    if where:
        encounter["location"] = [{"location": {"display": where[:200]}}]
    pv2 = m.first("PV2")
    if pv2 is not None:
        reason = m.reps(pv2[0], 3)
        concept = coded_concept(m, reason[0]) if reason else None
        if concept:
            encounter["reasonCode"] = [concept]
    if m.header.sending_facility:
        encounter["serviceProvider"] = {"display": m.header.sending_facility[:200]}
    return encounter


def merges(m: Message, first: dict[str, Any], entries: list[dict[str, Any]]) -> list[Merge]:
    """A40: one merge per PID/MRG pair (ADT_A39 repeats PID, [PD1], MRG, [PV1]).

    The first PID is the message's person (already in `entries` as `first`);
    each later PID adds its own Patient entry. A pair whose MRG is missing,
    or whose prior NHS number is invalid, is named in an ERR; the other pairs
    still merge.
    """
    groups: list[dict[str, Any]] = []
    for name, segment, seq in m.segments:
        if name == "PID":
            groups.append({"pid": segment, "seq": seq, "pd1": None, "mrg": None})
        elif groups and name == "PD1" and groups[-1]["pd1"] is None:
            groups[-1]["pd1"] = segment
        elif groups and name == "MRG" and groups[-1]["mrg"] is None:
            groups[-1]["mrg"], groups[-1]["mrg_seq"] = segment, seq
    merges: list[Merge] = []
    for number, group in enumerate(groups, start=1):
        if number == 1:
            survivor = first
        else:
            survivor = patient(m, group["pid"], group["pd1"], group["seq"])[0]
            entries.append(survivor)
        if group["mrg"] is None:
            m.problem("MRG", number, 0, "100", "A40 needs an MRG segment after each PID, "
                      "naming the merged person.")  # fmt: skip
            continue
        survivor_nhs = next(
            (
                i["value"]
                for i in survivor.get("identifier", [])
                if i.get("system") == NHS_NUMBER_SYSTEM
            ),
            "",
        )
        if not nhs_number_valid(survivor_nhs):
            survivor_nhs = ""  # named in an ERR already; the worker parks the Patient
        prior_nhs, prior_local = _prior(m, group["mrg"], group["mrg_seq"])
        merges.append(Merge(prior_nhs, prior_local, survivor_nhs, str(survivor["id"])))
    return merges


def _prior(m: Message, mrg: Any, seq: int) -> tuple[str, str]:
    """MRG-1: the merged-away person's NHS number ("" if none or invalid) and Patient id."""
    prior_nhs = ""
    prior_local = ""
    for rep in m.reps(mrg, 1):
        parts = m.comps(rep) + [""] * 5
        if parts[4].upper() in NHS_ID_TYPES or parts[3].upper() in NHS_AUTHORITIES:
            prior_nhs = parts[0].replace(" ", "")
        else:
            prior_local = prior_local or parts[0]
    if prior_nhs and not (
        len(prior_nhs) == 10 and prior_nhs.isdigit() and nhs_number_valid(prior_nhs)
    ):
        m.problem("MRG", seq, 1, "102", "MRG-1: the prior NHS number is not valid.")
        prior_nhs = ""
    return prior_nhs, fhir_id("pt", prior_local) if prior_local else ""
