"""The trail as FHIR R4 AuditEvents, in the IHE Basic Audit Log Patterns (BALP) shape.

Pure: one AuditEvent row in, one FHIR AuditEvent (a dict) out. Reads of a
person's record follow BALP's PatientRead/PatientQuery patterns (the person
as an entity with role "patient", the user as the requesting agent, the
request id as a transaction entity); sign-in events use DICOM's User
Authentication type; everything else is an application activity.

Every row renders, whatever its `detail` holds: each kind of event writes its
own shape (a feed's `entries` is a count, a read's a list of entry ids), so
nothing here assumes one. Only well-formed entry ids become entities; every
text is made a valid FHIR string or code, or left out.
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

from audit.models import AuditAction, AuditEvent, AuditOutcome

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
RBAC_ROLE = "https://fhir.nhs.uk/CodeSystem/NHSJobRoleCode"

# action -> (profile, subtype code, FHIR action code C/R/U/D/E)
READS = {
    AuditAction.IDENTITY_VIEW: ("IHE.BasicAudit.PatientRead", "read", "R"),
    AuditAction.RECORD_VIEW: ("IHE.BasicAudit.PatientRead", "read", "R"),
    AuditAction.SECTION_VIEW: ("IHE.BasicAudit.PatientRead", "read", "R"),
    AuditAction.DOCUMENT_VIEW: ("IHE.BasicAudit.PatientRead", "read", "R"),
    AuditAction.API_READ: ("IHE.BasicAudit.PatientRead", "read", "R"),
    AuditAction.PATIENT_SEARCH: ("IHE.BasicAudit.PatientQuery", "search-type", "E"),
    AuditAction.ACCESS_BASIS: ("IHE.BasicAudit.PatientCreate", "create", "C"),
    AuditAction.BREAK_GLASS: ("IHE.BasicAudit.PatientCreate", "create", "C"),
    AuditAction.AUDIT_QUERY: ("IHE.BasicAudit.PatientQuery", "search-type", "E"),
}
SIGN_INS = {
    AuditAction.SIGN_IN: "110122",  # Login
    AuditAction.SIGN_IN_FAILED: "110122",
    AuditAction.SIGN_OUT: "110123",  # Logout
}
OUTCOMES: dict[str, str] = {
    AuditOutcome.SUCCESS: "0",
    AuditOutcome.DENIED: "4",
    AuditOutcome.REJECTED: "4",
    AuditOutcome.FAILED: "8",
}


DETAIL_KEYS = ("section", "withheld", "break_glass", "reason_code", "kind", "self_claimed")
MAX_ENTITIES = 500


def _when(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: Any) -> str | None:
    """A FHIR string of any value (lists and objects as JSON), or None for an empty one."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = str(value)  # as the trail has always shown them: True, 3
    else:
        text = json.dumps(value, default=str)
    text = text.encode("utf-8", "replace").decode("utf-8")  # no lone surrogates
    return text if text.strip() else None


def _code(value: Any) -> str | None:
    """A FHIR code (no leading, trailing or double spaces), or None for an empty one."""
    text = _text(value)
    if text is None:
        return None
    return " ".join(text.split()) or None


def _detail(event: AuditEvent) -> dict[str, Any]:
    return event.detail if isinstance(event.detail, dict) else {}


def _entry_ids(entries: Any) -> list[str]:
    """The well-formed entry ids an event names (a list of UUIDs; a count names none)."""
    if not isinstance(entries, list):
        return []
    found = []
    for entry in entries:
        if isinstance(entry, str) and entry.isascii():
            try:
                found.append(str(uuid.UUID(entry)))
            except ValueError:
                continue
    return found[:MAX_ENTITIES]


def _agents(event: AuditEvent) -> list[dict[str, Any]]:
    who: dict[str, Any] = {"display": _text(event.actor_name) or "unknown"}
    if event.actor_id:
        who["identifier"] = {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{event.actor_id}"}
    if event.actor_type == "system":  # a partner system sending data
        kind = {"system": DCM, "code": "110153", "display": "Source Role ID"}
    else:  # a person who is shown (or asks for) information
        kind = {"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}
    agent: dict[str, Any] = {"type": {"coding": [kind]}, "who": who, "requestor": True}
    role_code = _code(event.actor_role_code)
    if role_code:
        agent["role"] = [
            {"coding": [{"system": RBAC_ROLE, "code": role_code,
                         "display": _text(event.actor_role) or role_code}]}
        ]  # fmt: skip
    org = _text(event.actor_org_ods)
    if org:
        agent["location"] = {"identifier": {"system": ODS, "value": org}}
    if event.client_address:
        agent["network"] = {"address": str(event.client_address), "type": "2"}
    purpose = _code(event.purpose)
    if purpose:
        agent["purposeOfUse"] = [{"coding": [{"system": ACT_REASON, "code": purpose}]}]
    return [agent]


def _entities(event: AuditEvent) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    nhs_number = _text(event.nhs_number)
    if nhs_number:
        entities.append({
            "what": {"identifier": {"system": NHS_NUMBER, "value": nhs_number}},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        })  # fmt: skip
    details = _detail(event)
    for entry in _entry_ids(details.get("entries")):
        entities.append({
            "what": {"identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{entry}"}},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
        })  # fmt: skip
    request_id = _text(event.request_id)
    if request_id:
        entities.append({
            "what": {"identifier": {"value": request_id}},
            "type": {"system": BALP_ENTITY_TYPE, "code": "XrequestId"},
        })  # fmt: skip
    detail = [
        {"type": key, "valueString": text}
        for key in DETAIL_KEYS
        if (text := _text(details.get(key))) is not None
    ]
    entries = details.get("entries")
    if isinstance(entries, int) and not isinstance(entries, bool):
        # A feed's or a match decision's count of the entries it carried.
        detail.append({"type": "entries", "valueString": str(entries)})
    if detail:
        entities.append({
            "type": {"system": ENTITY_TYPE, "code": "4", "display": "Other"},
            "description": _text(event.get_action_display()) or "Other",
            "detail": detail,
        })  # fmt: skip
    return entities


def audit_event_as_fhir(event: AuditEvent) -> dict[str, Any]:
    """One trail row as a FHIR R4 AuditEvent (BALP where a pattern fits)."""
    resource: dict[str, Any] = {"resourceType": "AuditEvent", "id": str(event.id)}
    action = AuditAction(event.action) if event.action in AuditAction.values else None
    if action in READS:
        profile, subtype, code = READS[action]
        resource["meta"] = {"profile": [BALP + profile]}
        resource["type"] = {"system": AUDIT_EVENT_TYPE, "code": "rest",
                            "display": "Restful Operation"}  # fmt: skip
        resource["subtype"] = [{"system": RESTFUL, "code": subtype}]
        resource["action"] = code
    elif action in SIGN_INS:
        resource["type"] = {"system": DCM, "code": "110114", "display": "User Authentication"}
        resource["subtype"] = [{"system": DCM, "code": SIGN_INS[action]}]
        resource["action"] = "E"
    else:
        resource["type"] = {"system": DCM, "code": "110100", "display": "Application Activity"}
        resource["action"] = "E"
    ours: dict[str, Any] = {"system": "urn:sharedrecord:audit-action"}
    if action_code := _code(event.action):
        ours["code"] = action_code
    if display := _text(event.get_action_display()):
        ours["display"] = display
    resource["subtype"] = [*resource.get("subtype", []), ours]
    resource["recorded"] = _when(event.occurred_at)
    resource["outcome"] = OUTCOMES.get(event.outcome, "8")
    if event.outcome != AuditOutcome.SUCCESS:
        resource["outcomeDesc"] = _text(event.get_outcome_display()) or "Not successful"
    if purpose := _code(event.purpose):
        resource["purposeOfEvent"] = [{"coding": [{"system": ACT_REASON, "code": purpose}]}]
    resource["agent"] = _agents(event)
    resource["source"] = {
        "observer": {"display": "Shared care record"},
        "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
    }
    entities = _entities(event)
    if entities:
        resource["entity"] = entities
    return resource
