"""The trail as FHIR R4 AuditEvents, in the IHE Basic Audit Log Patterns (BALP) shape.

Pure: one AuditEvent row in, one FHIR AuditEvent (a dict) out. Reads of a
person's record follow BALP's PatientRead/PatientQuery patterns (the person
as an entity with role "patient", the user as the requesting agent, the
request id as a transaction entity); sign-in events use DICOM's User
Authentication type; everything else is an application activity.
"""

from __future__ import annotations

import datetime
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
OUTCOMES = {
    AuditOutcome.SUCCESS: "0",
    AuditOutcome.DENIED: "4",
    AuditOutcome.REJECTED: "4",
    AuditOutcome.FAILED: "8",
}


def _when(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _agents(event: AuditEvent) -> list[dict[str, Any]]:
    who: dict[str, Any] = {"display": event.actor_name or "unknown"}
    if event.actor_id:
        who["identifier"] = {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{event.actor_id}"}
    if event.actor_type == "system":  # a partner system sending data
        kind = {"system": DCM, "code": "110153", "display": "Source Role ID"}
    else:  # a person who is shown (or asks for) information
        kind = {"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}
    agent: dict[str, Any] = {"type": {"coding": [kind]}, "who": who, "requestor": True}
    if event.actor_role_code:
        agent["role"] = [
            {"coding": [{"system": RBAC_ROLE, "code": event.actor_role_code,
                         "display": event.actor_role or event.actor_role_code}]}
        ]  # fmt: skip
    if event.actor_org_ods:
        agent["location"] = {"identifier": {"system": ODS, "value": event.actor_org_ods}}
    if event.client_address:
        agent["network"] = {"address": str(event.client_address), "type": "2"}
    if event.purpose:
        agent["purposeOfUse"] = [{"coding": [{"system": ACT_REASON, "code": event.purpose}]}]
    return [agent]


def _entities(event: AuditEvent) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    if event.nhs_number:
        entities.append({
            "what": {"identifier": {"system": NHS_NUMBER, "value": event.nhs_number}},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        })  # fmt: skip
    for entry in event.detail.get("entries", [])[:500]:
        entities.append({
            "what": {"identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{entry}"}},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
        })  # fmt: skip
    if event.request_id:
        entities.append({
            "what": {"identifier": {"value": event.request_id}},
            "type": {"system": BALP_ENTITY_TYPE, "code": "XrequestId"},
        })  # fmt: skip
    detail = [
        {"type": key, "valueString": str(event.detail[key])}
        for key in ("section", "withheld", "break_glass", "reason_code", "kind", "self_claimed")
        if str(event.detail.get(key, "")) != ""
    ]
    if detail:
        entities.append({
            "type": {"system": ENTITY_TYPE, "code": "4", "display": "Other"},
            "description": event.get_action_display(),
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
    resource["subtype"] = [
        *resource.get("subtype", []),
        {"system": "urn:sharedrecord:audit-action", "code": event.action,
         "display": event.get_action_display()},
    ]  # fmt: skip
    resource["recorded"] = _when(event.occurred_at)
    resource["outcome"] = OUTCOMES.get(AuditOutcome(event.outcome), "8")
    if event.outcome != AuditOutcome.SUCCESS:
        resource["outcomeDesc"] = event.get_outcome_display()
    if event.purpose:
        resource["purposeOfEvent"] = [{"coding": [{"system": ACT_REASON, "code": event.purpose}]}]
    resource["agent"] = _agents(event)
    resource["source"] = {
        "observer": {"display": "Shared care record"},
        "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
    }
    entities = _entities(event)
    if entities:
        resource["entity"] = entities
    return resource
