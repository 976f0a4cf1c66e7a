"""FHIR R4's required bindings on the fields the record indexes.

fhir.resources checks a code's form, not its value set; these tables and the
check close that gap.
"""

from __future__ import annotations

from typing import Any

from ingestion.fhir.results import EntryError

_GENDER = frozenset({"male", "female", "other", "unknown"})
_REQUEST_STATUS = frozenset(
    {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
)
REQUIRED_CODES: dict[str, dict[str, frozenset[str]]] = {
    "Patient": {"gender": _GENDER},
    "RelatedPerson": {"gender": _GENDER},
    "Observation": {
        "status": frozenset(
            {
                "registered",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "cancelled",
                "entered-in-error",
                "unknown",
            }
        )
    },
    "DiagnosticReport": {
        "status": frozenset(
            {
                "registered",
                "partial",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "appended",
                "cancelled",
                "entered-in-error",
                "unknown",
            }
        )
    },
    "Encounter": {
        "status": frozenset(
            {
                "planned",
                "arrived",
                "triaged",
                "in-progress",
                "onleave",
                "finished",
                "cancelled",
                "entered-in-error",
                "unknown",
            }
        )
    },
    "MedicationStatement": {
        "status": frozenset(
            {
                "active",
                "completed",
                "entered-in-error",
                "intended",
                "stopped",
                "on-hold",
                "unknown",
                "not-taken",
            }
        )
    },
    "MedicationRequest": {
        "status": frozenset(
            {
                "active",
                "on-hold",
                "cancelled",
                "completed",
                "entered-in-error",
                "stopped",
                "draft",
                "unknown",
            }
        )
    },
    "Procedure": {
        "status": frozenset(
            {
                "preparation",
                "in-progress",
                "not-done",
                "on-hold",
                "stopped",
                "completed",
                "entered-in-error",
                "unknown",
            }
        )
    },
    "Immunization": {"status": frozenset({"completed", "entered-in-error", "not-done"})},
    "CarePlan": {"status": _REQUEST_STATUS},
    "ServiceRequest": {"status": _REQUEST_STATUS},
    "DocumentReference": {"status": frozenset({"current", "superseded", "entered-in-error"})},
    "Appointment": {
        "status": frozenset(
            {
                "proposed",
                "pending",
                "booked",
                "arrived",
                "fulfilled",
                "cancelled",
                "noshow",
                "entered-in-error",
                "checked-in",
                "waitlist",
            }
        )
    },
    "Flag": {"status": frozenset({"active", "inactive", "entered-in-error"})},
    "Consent": {
        "status": frozenset(
            {"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}
        )
    },
    "CareTeam": {
        "status": frozenset({"proposed", "active", "suspended", "inactive", "entered-in-error"})
    },
}
# Required CodeableConcept bindings: path -> (code system, allowed codes).
REQUIRED_CONCEPTS: dict[str, dict[str, tuple[str, frozenset[str]]]] = {
    "Condition": {
        "clinicalStatus": (
            "http://terminology.hl7.org/CodeSystem/condition-clinical",
            frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"}),
        ),
        "verificationStatus": (
            "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            frozenset(
                {
                    "unconfirmed",
                    "provisional",
                    "differential",
                    "confirmed",
                    "refuted",
                    "entered-in-error",
                }
            ),
        ),
    },
    "AllergyIntolerance": {
        "clinicalStatus": (
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
            frozenset({"active", "inactive", "resolved"}),
        ),
        "verificationStatus": (
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
            frozenset({"unconfirmed", "confirmed", "refuted", "entered-in-error"}),
        ),
    },
}


def binding_rules(resource: dict[str, Any], resource_type: str) -> None:
    """Refuse a coded field whose value is outside its required binding (EntryError, by path)."""
    for field_name, allowed in REQUIRED_CODES.get(resource_type, {}).items():
        value = resource.get(field_name)
        if value is not None and value not in allowed:
            raise EntryError(
                "invalid-code",
                f"{field_name} is not a code of its required value set.",
                (f"{resource_type}.{field_name}",),
            )
    for field_name, (system, allowed) in REQUIRED_CONCEPTS.get(resource_type, {}).items():
        concept = resource.get(field_name)
        if not isinstance(concept, dict):
            continue
        for i, coding in enumerate(concept.get("coding", [])):
            if coding.get("system") == system and coding.get("code") not in allowed:
                raise EntryError(
                    "invalid-code",
                    f"{field_name} is not a code of its required value set.",
                    (f"{resource_type}.{field_name}.coding[{i}].code",),
                )
