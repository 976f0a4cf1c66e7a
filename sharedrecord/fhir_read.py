"""Audited reads for the FHIR R4 read API: the same access policy as the record pages.

Every function here hands personal data to a caller, so each writes one
audit event (STYLE.md section 4) before anything is returned: the person
read, every entry id returned, the caller's client and purpose of use. If
the audit write fails, nothing is returned.

Resources leave as text from PostgreSQL (PITFALLS: turning JSONB back into
text is most of the cost of reading a big record); only their `id` and
`meta` are changed, in SQL, and nothing here parses them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import ActorType, AuditAction, AuditOutcome
from audit.services import AuditActor, AuditContext, audit_event_record
from sharedrecord.access import (
    ODS_SYSTEM,
    REDACTION_ALSO_DROPS,
    Relationship,
    ViewPolicy,
    entries_visible,
    relationships_of,
    view_policy_for,
)
from sharedrecord.auditing import actor_for
from sharedrecord.exceptions import PatientNotFound
from sharedrecord.models import BasisKind, Entry, OverrideReason, Patient, User, is_uuid
from sharedrecord.search import (
    SearchResult,
    audit_subject_of,
    patient_or_denied,
    patient_search,
    patient_search_by_demographics,
)

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
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


PURPOSES = {"TREAT": "treatment", "ETREAT": "emergency treatment (break glass)"}


@dataclass(frozen=True)
class ApiBasis:
    """The basis for a read, sent with each request (there is no session to keep it in)."""

    purpose: str  # HL7 v3 PurposeOfUse: TREAT or ETREAT
    reason_code: str = ""  # ETREAT: an HL7 v3 override reason (OVRER, OVRPJ, ...)
    reason_text: str = ""

    @property
    def kind(self) -> str:
        if self.purpose == "ETREAT":
            return BasisKind.BREAK_GLASS
        return BasisKind.DIRECT_CARE if settings.CONSENT_MODEL == "implied" else BasisKind.CONSENT


def api_basis_parse(*, purpose: str, reason_code: str, reason_text: str) -> ApiBasis:
    """Check the X-Purpose-Of-Use and X-Break-Glass-* headers; ValidationError names what is wrong.

    Emergency access (ETREAT) needs an override reason code and words, as the
    break-glass page does.
    """
    purpose = purpose.strip().upper()
    if purpose not in PURPOSES:
        raise ValidationError(
            "Send the X-Purpose-Of-Use header: TREAT, or ETREAT for emergency access."
        )
    if purpose == "TREAT":
        return ApiBasis(purpose)
    reason_code = reason_code.strip().upper()
    reason_text = reason_text.strip()[:500]
    if reason_code not in OverrideReason.values:
        raise ValidationError(
            "Emergency access needs X-Break-Glass-Reason: one of "
            + ", ".join(OverrideReason.values)
            + "."
        )
    if len(reason_text) < 10:
        raise ValidationError(
            "Emergency access needs X-Break-Glass-Justification: why (at least 10 characters)."
        )
    return ApiBasis(purpose, reason_code, reason_text)


def _detail(caller: ApiCaller, basis: ApiBasis, interaction: str, **more: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "via": "fhir-api",
        "client": caller.client_name,
        "client_id": caller.client_id,
        "interaction": interaction,
        "purpose": basis.purpose,
    }
    if basis.purpose == "ETREAT":
        detail["reason_code"] = basis.reason_code
        detail["reason_text"] = basis.reason_text
    return {**detail, **more}


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
    detail = _detail(caller, basis, "search-type")
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
        detail=_detail(
            caller,
            basis,
            "read",
            type="Patient",
            entries=[],
            break_glass=basis.purpose == "ETREAT",
            review=basis.purpose == "ETREAT" or not relationships,
        ),
        context=context,
    )
    return patient


# ------------------------------------------------------------------ the entries of a record


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts, in arrival order, within the first page's snapshot."""

    as_of: datetime.datetime
    received_at: datetime.datetime
    public_id: uuid.UUID
    total: int
    withheld: bool
    query: str  # a hash of the search it belongs to: a cursor is not reused for another

    def token(self) -> str:
        return signing.dumps(
            [
                self.as_of.isoformat(),
                self.received_at.isoformat(),
                str(self.public_id),
                self.total,
                self.withheld,
                self.query,
            ],
            salt=CURSOR_SALT,
            compress=True,
        )


CURSOR_SALT = "sharedrecord.fhir.cursor"


def cursor_read(token: str, *, query: str) -> Cursor:
    """The cursor a next link carries; ValidationError if it was altered or is another search's."""
    try:
        as_of, received_at, public_id, total, withheld, for_query = signing.loads(
            token, salt=CURSOR_SALT
        )
        cursor = Cursor(
            datetime.datetime.fromisoformat(as_of),
            datetime.datetime.fromisoformat(received_at),
            uuid.UUID(public_id),
            int(total),
            bool(withheld),
            str(for_query),
        )
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise ValidationError("The _cursor parameter is not one this server gave out.") from exc
    if cursor.query != query:
        raise ValidationError("The _cursor parameter belongs to another search.")
    return cursor


def query_key(params: Iterable[tuple[str, str]]) -> str:
    """A short hash of a search's parameters (less the cursor and page size)."""
    kept = sorted((k, v) for k, v in params if k not in ("_cursor", "_count"))
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Row:
    """One entry of a page: its text is the stored resource with our id and meta."""

    public_id: uuid.UUID
    resource_type: str
    updated_at: datetime.datetime
    source_ods: str
    source_name: str
    source_system: str
    text: str


@dataclass(frozen=True)
class Page:
    patient: Patient
    rows: list[Row]
    total: int
    withheld: bool  # entries of the asked-for types were withheld for sensitivity
    next_cursor: Cursor | None


# The stored resource with our id and provenance in meta, turned to text by PostgreSQL.
# Its subject (or patient) reference is pointed at the person's id here, so a
# client can follow it; the source's own reference names the source's id.
# Elements the caller's policy withholds (access.ViewPolicy.withheld_elements,
# passed as {type: [element, ...]}) are removed, with the narrative and contained
# resources that may repeat them (access.REDACTION_ALSO_DROPS), and the resource
# then carries the REDACTED security label, so nobody reads it as complete.
RESOURCE_TEXT_SQL = """
SELECT e.public_id, (
    (e.resource - w.dropped) || jsonb_build_object(
        'id', e.public_id::text,
        'meta', coalesce(e.resource -> 'meta', '{}'::jsonb) || jsonb_build_object(
            'source', %(ord)s || o.ods_code
                || CASE WHEN e.source_system = '' THEN ''
                        ELSE '#' || replace(e.source_system, ' ', '%%20') END,
            'lastUpdated', to_char(e.updated_at AT TIME ZONE 'UTC',
                                   'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        ) || CASE WHEN e.resource ?| w.elements THEN jsonb_build_object(
            'security',
            coalesce(e.resource #> '{meta,security}', '[]'::jsonb) || %(redacted)s::jsonb)
            ELSE '{}'::jsonb END
    )
    || CASE WHEN jsonb_typeof(e.resource -> 'subject') = 'object' THEN jsonb_build_object(
        'subject', (e.resource -> 'subject') - 'reference'
                   || jsonb_build_object('reference', 'Patient/' || %(person)s)) ELSE '{}' END
    || CASE WHEN jsonb_typeof(e.resource -> 'patient') = 'object' THEN jsonb_build_object(
        'patient', (e.resource -> 'patient') - 'reference'
                   || jsonb_build_object('reference', 'Patient/' || %(person)s)) ELSE '{}' END
)::text
FROM sharedrecord_entry e JOIN sharedrecord_organisation o ON o.id = e.source_org_id
CROSS JOIN LATERAL (
    SELECT ARRAY(SELECT jsonb_array_elements_text(%(withheld)s::jsonb -> e.resource_type))
        AS elements
) v
CROSS JOIN LATERAL (
    SELECT v.elements,
           CASE WHEN e.resource ?| v.elements THEN v.elements || %(also)s::text[]
                ELSE v.elements END AS dropped
) w
WHERE e.patient_id = %(patient)s AND e.id = ANY(%(ids)s)
"""
REDACTED_LABEL = [
    {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "REDACTED",
        "display": "redacted",
    }
]


def _texts(patient: Patient, ids: list[int], policy: ViewPolicy) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    withheld = {kind: sorted(names) for kind, names in policy.withheld_elements.items()}
    with connection.cursor() as cursor:
        cursor.execute(
            RESOURCE_TEXT_SQL,
            {
                "ord": ORD_URL,
                "redacted": json.dumps(REDACTED_LABEL),
                "person": str(patient.public_id),
                "withheld": json.dumps(withheld),
                "also": sorted(REDACTION_ALSO_DROPS),
                "patient": patient.pk,
                "ids": ids,
            },
        )
        return {public_id: text for public_id, text in cursor.fetchall()}


def api_entries_page(
    *,
    caller: ApiCaller,
    basis: ApiBasis,
    patient_id: str,
    types: frozenset[str],
    where: Q,
    count: int,
    cursor: Cursor | None,
    query: str,
    interaction: str,
    context: AuditContext | None = None,
) -> Page:
    """One page of the person's entries of these types that this caller may see; audited.

    Stable paging: entries come in arrival order (received_at, then public
    id) up to the first page's snapshot time, so an entry that arrives while
    a client pages is left for its next `_since` read, and an updated entry
    keeps its place: no duplicates, no gaps. The total and the "withheld"
    flag are the first page's, carried in the cursor.
    Raises PatientNotFound (after an audited denial) for a person the caller
    may not see. Side effects: one audit event (api-read) listing every
    entry returned, flagged for review for emergency access or when the
    feeds show no relationship between the caller's organisation and the
    person.
    """
    actor = caller.actor()
    patient = patient_or_denied(
        viewer=caller.user,
        patient_id=patient_id,
        context=context,
        asked=f"api-{interaction}",
        actor=actor,
    )
    relationships = relationships_of(viewer=caller.user, patient=patient)
    policy = view_policy_for(
        viewer=caller.user, basis_kind=basis.kind, relationships={r.kind for r in relationships}
    )
    visible = entries_visible(patient=patient, policy=policy)
    wanted = Q(resource_type__in=sorted(types)) & where
    as_of = cursor.as_of if cursor else timezone.now()
    matching = visible.entries.filter(wanted, received_at__lte=as_of)
    if cursor is None:
        total = matching.count()
        # Anything withheld, overall: never which type or section it is in.
        withheld = visible.hidden.exists()
    else:
        total, withheld = cursor.total, cursor.withheld
        matching = matching.filter(
            Q(received_at__gt=cursor.received_at)
            | Q(received_at=cursor.received_at, public_id__gt=cursor.public_id)
        )
    keys = list(
        matching.order_by("received_at", "public_id").values_list(
            "id", "public_id", "received_at", "resource_type", "updated_at",
            "source_org__ods_code", "source_org__name", "source_system",
        )[: count + 1]
    )  # fmt: skip
    more = len(keys) > count
    keys = keys[:count]
    next_cursor = None
    if more and keys:  # _count=0 asks for the total alone: no page follows
        last = keys[-1]
        next_cursor = Cursor(as_of, last[2], last[1], total, withheld, query)
    with transaction.atomic():
        audit_event_record(
            action=AuditAction.API_READ,
            actor=actor,
            subject=audit_subject_of(patient),
            purpose=basis.purpose,
            detail=_detail(
                caller,
                basis,
                interaction,
                entries=[str(k[1]) for k in keys],
                withheld=withheld,
                break_glass=basis.purpose == "ETREAT",
                review=basis.purpose == "ETREAT" or not relationships,
            ),
            source_ods={k[5] for k in keys},
            context=context,
        )
    texts = _texts(patient, [k[0] for k in keys], policy)
    rows = [Row(k[1], k[3], k[4], k[5], k[6], k[7], texts[k[1]]) for k in keys if k[1] in texts]
    return Page(patient, rows, total, withheld, next_cursor)


def api_entry_read(
    *,
    caller: ApiCaller,
    basis: ApiBasis,
    resource_type: str,
    entry_id: str,
    context: AuditContext | None = None,
) -> Row:
    """One entry by id, if this caller may see it; PatientNotFound alike otherwise.

    Side effects: one audit event (api-read), or an audited denial that names
    only the asked-for id.
    """
    actor = caller.actor()
    entry = (
        Entry.objects.filter(public_id=entry_id, resource_type=resource_type)
        .select_related("patient")
        .first()
        if is_uuid(entry_id)
        else None
    )
    shown = None
    relationships: list[Relationship] = []
    policy = view_policy_for(viewer=caller.user, basis_kind=None, relationships=())
    if entry is not None and caller.user.is_active:
        relationships = relationships_of(viewer=caller.user, patient=entry.patient)
        policy = view_policy_for(
            viewer=caller.user,
            basis_kind=basis.kind,
            relationships={r.kind for r in relationships},
        )
        shown = (
            entries_visible(patient=entry.patient, policy=policy)
            .entries.filter(pk=entry.pk)
            .values_list("source_org__ods_code", "source_org__name")
            .first()
        )
    if entry is None or shown is None:
        audit_event_record(
            action=AuditAction.ACCESS_DENIED,
            actor=actor,
            outcome=AuditOutcome.DENIED,
            detail={"asked": "api-read", "entry": str(entry_id)[:40], "reason": "not-visible"},
            context=context,
        )
        raise PatientNotFound(f"No {resource_type} with this id is available to you.")
    with transaction.atomic():
        audit_event_record(
            action=AuditAction.API_READ,
            actor=actor,
            subject=audit_subject_of(entry.patient),
            purpose=basis.purpose,
            detail=_detail(
                caller,
                basis,
                "read",
                type=resource_type,
                entries=[str(entry.public_id)],
                break_glass=basis.purpose == "ETREAT",
                review=basis.purpose == "ETREAT" or not relationships,
            ),
            source_ods=[shown[0]],
            context=context,
        )
    text = _texts(entry.patient, [entry.pk], policy)[entry.public_id]
    return Row(
        entry.public_id, resource_type, entry.updated_at, shown[0], shown[1],
        entry.source_system, text,
    )  # fmt: skip
