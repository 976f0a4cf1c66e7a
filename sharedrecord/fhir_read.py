"""Audited reads for the FHIR R4 read API: who calls and why, and the person they read.

The caller (ApiCaller), the basis each request sends (ApiBasis, checked by
access.py's rules), the person found or read, and the audit detail every API
read carries. The entries of a record are fhir_entries.py's. Every function
here that hands personal data to a caller writes one audit event (STYLE.md
section 4) before anything is returned; if the audit write fails, nothing is
returned.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

from audit.models import ActorType, AuditAction
from audit.trail import AuditActor, AuditContext, audit_event_record
from sharedrecord.access import (
    BASIS_WORDS_MIN,
    ODS_SYSTEM,
    Relationship,
    ViewPolicy,
    api_purpose_acceptable,
    basis_kind_for_purpose,
    basis_needs_review,
    justification_acceptable,
    override_reason_acceptable,
    relationships_of,
    view_policy_for,
)
from sharedrecord.auditing import actor_for
from sharedrecord.fhirapi.params import NHS_NUMBER_SYSTEM
from sharedrecord.models import BasisKind, OverrideReason, Patient, User
from sharedrecord.search import (
    SearchResult,
    audit_subject_of,
    patient_or_denied,
    patient_search,
    patient_search_by_demographics,
)

# meta.source names the sending organisation by its ODS ORD address, then its system.
ORD_URL = "https://directory.spineservices.nhs.uk/ORD/2-0-0/organisations/"


# ------------------------------------------------------------------ who calls, and why


@dataclass(frozen=True)
class ApiCaller:
    """Who is reading: a member of staff through an application, or a partner system.

    A partner system (client credentials) reads as its service account: a
    user of its organisation with a clinical role and no usable password.
    """

    user: User
    client_id: str
    client_name: str
    system: bool
    types: frozenset[str]  # the resource types its token's scopes allow
    # A partner system asking for one of its own staff (a live pull, issue 25): who, in
    # which role and organisation, as that system's headers say. Audited, never trusted
    # for access: the system's own account and organisation decide what it sees.
    on_behalf_of: dict[str, str] = field(default_factory=dict)
    # EHR launch context: the only person (public id) its `patient/` scopes may read.
    patient_limit: str = ""

    def may_read_person(self, patient_id: str) -> bool:
        """Whether a token limited to its launch context reaches this person (else as 404)."""
        return not self.patient_limit or patient_id == self.patient_limit

    def actor(self) -> AuditActor:
        if not self.system:
            return actor_for(self.user)
        organisation = self.user.organisation
        return AuditActor(
            type=ActorType.SYSTEM,
            name=f"api:{self.client_name}"[:150],
            id=self.user.public_id,
            role=self.user.role,
            role_code=self.user.rbac_code,
            org_ods=organisation.ods_code if organisation else "",
        )


@dataclass(frozen=True)
class ApiBasis:
    """The basis for a read, sent with each request (there is no session to keep it in)."""

    purpose: str  # HL7 v3 PurposeOfUse: TREAT or ETREAT
    reason_code: str = ""  # ETREAT: an HL7 v3 override reason (OVRER, OVRPJ, ...)
    reason_text: str = ""

    @property
    def kind(self) -> str:
        return basis_kind_for_purpose(self.purpose)


# The headers a live pull sends (ingestion/pulling.py, pull_headers), as audit detail keys.
ON_BEHALF_OF_HEADERS = {
    "X-Request-User": "user_id",
    "X-Request-User-Name": "user",
    "X-Request-User-Role": "role",
    "X-Request-User-Organisation": "organisation",
}


def on_behalf_of_parse(headers: Mapping[str, str]) -> dict[str, str]:
    """The end user a partner system names in its headers, bounded and printable."""
    found: dict[str, str] = {}
    for header, key in ON_BEHALF_OF_HEADERS.items():
        value = "".join(c for c in headers.get(header, "") if " " <= c <= "~").strip()[:150]
        if value:
            found[key] = value
    return found


def api_basis_parse(*, purpose: str, reason_code: str, reason_text: str) -> ApiBasis:
    """Check the X-Purpose-Of-Use and X-Break-Glass-* headers; ValidationError names what is wrong.

    The rules are access.py's (the basis for reading): an acceptable purpose
    of use and, for emergency access (ETREAT), an override reason code and
    words, as the break-glass page asks.
    """
    purpose = purpose.strip().upper()
    if not api_purpose_acceptable(purpose):
        raise ValidationError(
            "Send the X-Purpose-Of-Use header: TREAT, or ETREAT for emergency access."
        )
    if basis_kind_for_purpose(purpose) != BasisKind.BREAK_GLASS:
        return ApiBasis(purpose)
    reason_code = reason_code.strip().upper()
    reason_text = reason_text.strip()[:500]
    if not override_reason_acceptable(reason_code):
        raise ValidationError(
            "Emergency access needs X-Break-Glass-Reason: one of "
            + ", ".join(OverrideReason.values)
            + "."
        )
    if not justification_acceptable(reason_text):
        raise ValidationError(
            "Emergency access needs X-Break-Glass-Justification: why (at least "
            f"{BASIS_WORDS_MIN} characters)."
        )
    return ApiBasis(purpose, reason_code, reason_text)


def api_policy(
    *, caller: ApiCaller, basis: ApiBasis, patient: Patient
) -> tuple[ViewPolicy, list[Relationship]]:
    """What this caller may see of this person under this request's basis, and why.

    The relationships are the feeds' now (there is no recorded basis to keep
    them); restricted items need one, as on the pages.
    """
    relationships = relationships_of(viewer=caller.user, patient=patient)
    policy = view_policy_for(
        viewer=caller.user, basis_kind=basis.kind, relationships={r.kind for r in relationships}
    )
    return policy, relationships


def api_event_detail(
    *,
    caller: ApiCaller,
    basis: ApiBasis,
    interaction: str,
    relationships: list[Relationship] | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The audit detail of an API read: client, interaction, purpose (and any emergency reason).

    With `relationships` (a read of a person's record), it also says whether
    it was emergency access and whether it goes to review (needs_review).
    """
    detail: dict[str, Any] = {
        "via": "fhir-api",
        "client": caller.client_name,
        "client_id": caller.client_id,
        "interaction": interaction,
        "purpose": basis.purpose,
    }
    if caller.on_behalf_of:
        detail["on_behalf_of"] = caller.on_behalf_of
    if basis.purpose == "ETREAT":
        detail["reason_code"] = basis.reason_code
        detail["reason_text"] = basis.reason_text
    detail.update(more)
    if relationships is not None:
        detail["break_glass"] = basis.kind == BasisKind.BREAK_GLASS
        detail["needs_review"] = basis_needs_review(kind=basis.kind, relationships=relationships)
    return detail


# ------------------------------------------------------------------ finding a person


def api_patient_search(
    *,
    caller: ApiCaller,
    basis: ApiBasis,
    nhs_number: str = "",
    family: str = "",
    birth_date: datetime.date | None = None,
    gender: str = "",
    postcode: str = "",
    context: AuditContext | None = None,
) -> SearchResult:
    """Find people by NHS number, or by family name and date of birth; an audited read.

    The pages' own search services do the finding and write the audit event
    (naming the people found), with the API's client and purpose added.
    """
    detail = api_event_detail(caller=caller, basis=basis, interaction="search-type")
    if nhs_number:
        found = patient_search(
            viewer=caller.user,
            nhs_number=nhs_number,
            context=context,
            actor=caller.actor(),
            detail=detail,
        )
        return SearchResult([found] if found else [], too_many=False)
    if birth_date is None:
        raise ValidationError("Search by NHS number, or by family name and birth date.")
    return patient_search_by_demographics(
        viewer=caller.user,
        family_name=family,
        birth_date=birth_date,
        postcode=postcode,
        gender=gender,
        context=context,
        actor=caller.actor(),
        detail=detail,
    )


def patient_resource(patient: Patient) -> dict[str, Any]:
    """The person as the combined record shows them: demographics merged by precedence.

    Its id is the person's public id; meta.source names the organisation
    whose demographics were chosen.
    """
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(patient.public_id),
        "meta": {"lastUpdated": patient.updated_at.isoformat()},
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": patient.nhs_number}],
    }
    if patient.demographics_source_ods:
        resource["meta"]["source"] = ORD_URL + patient.demographics_source_ods
    name: dict[str, Any] = {"use": "official"}
    if patient.family_name:
        name["family"] = patient.family_name
    if patient.given_names:
        name["given"] = patient.given_names.split()
    if len(name) > 1:
        resource["name"] = [name]
    if patient.gender:
        resource["gender"] = patient.gender
    if patient.birth_date:
        resource["birthDate"] = patient.birth_date.isoformat()
    if patient.deceased_at:
        # As the chosen source sent it: a partial date keeps its precision.
        resource["deceasedDateTime"] = patient.deceased_at
    elif patient.deceased:
        resource["deceasedBoolean"] = True
    address = {k: v for k, v in (("text", patient.address), ("postalCode", patient.postcode)) if v}
    if address:
        resource["address"] = [{"use": "home", **address}]
    if patient.registered_gp_ods:
        resource["generalPractitioner"] = [
            {"identifier": {"system": ODS_SYSTEM, "value": patient.registered_gp_ods}}
        ]
    if patient.demographics_disputed:
        # Sources disagree: say on which fields, so a client does not take these as settled.
        resource["extension"] = [
            {
                "url": DISPUTED_EXTENSION,
                "valueCodeableConcept": {
                    "coding": [
                        {"system": DISPUTED_SYSTEM, "code": field}
                        for field in patient.demographics_disputed
                    ],
                    "text": "Other services hold different details: "
                    + ", ".join(patient.disputed_labels),
                },
            }
        ]
    return resource


DISPUTED_EXTENSION = "https://sharedrecord.nhs.invalid/StructureDefinition/demographics-disputed"
DISPUTED_SYSTEM = "https://sharedrecord.nhs.invalid/CodeSystem/demographic-field"


def api_patient_read(
    *, caller: ApiCaller, basis: ApiBasis, patient_id: str, context: AuditContext | None = None
) -> Patient:
    """One person by public id; PatientNotFound alike for "no such person" and "not yours".

    Side effects: one audit event (api-read), or an audited denial. Like
    $everything's, the event is flagged for review for emergency access or
    when the feeds show no relationship between the caller's organisation
    and the person.
    """
    patient = patient_or_denied(
        viewer=caller.user,
        patient_id=patient_id,
        context=context,
        asked="api-patient",
        actor=caller.actor(),
    )
    relationships = relationships_of(viewer=caller.user, patient=patient)
    audit_event_record(
        action=AuditAction.API_READ,
        actor=caller.actor(),
        subject=audit_subject_of(patient),
        purpose=basis.purpose,
        detail=api_event_detail(
            caller=caller,
            basis=basis,
            interaction="read",
            relationships=relationships,
            type="Patient",
            entries=[],
        ),
        context=context,
    )
    return patient
