"""Finding a person: by NHS number, by demographics, or by public id; every attempt audited.

Each function here tells a viewer whether someone exists, so each writes one
audit event: the search itself, or the denial when an id names nobody the
viewer may see (STYLE.md section 4).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, Value
from django.db.models.functions import Replace, Upper

from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditActor, AuditContext, AuditSubject, audit_event_record
from sharedrecord.access import (
    patient_get_for_viewer,
    patients_visible_to,
)
from sharedrecord.auditing import actor_for
from sharedrecord.exceptions import PatientNotFound
from sharedrecord.matching import nhs_number_is_valid, nhs_number_normalise
from sharedrecord.models import (
    Patient,
    User,
)


def patient_search(
    *,
    viewer: User,
    nhs_number: str,
    context: AuditContext | None = None,
    actor: AuditActor | None = None,
    detail: dict[str, Any] | None = None,
) -> Patient | None:
    """Find a person by NHS number for this viewer; an audited read.

    Returns None alike when nobody has that number, when the person opted out
    (they have no record) and when the viewer may not see them. Side effects:
    one audit event, naming the number searched for (as `actor`, default the
    viewer, with `detail` added: the API names its client there).
    """
    number = nhs_number_normalise(nhs_number)
    patient = None
    if nhs_number_is_valid(number):
        patient = patients_visible_to(viewer).filter(nhs_number=number).first()
    audit_event_record(
        action=AuditAction.PATIENT_SEARCH,
        actor=actor or actor_for(viewer),
        subject=AuditSubject(
            patient_id=patient.public_id if patient else None,
            nhs_number=number if nhs_number_is_valid(number) else "",
            gp_ods=patient.registered_gp_ods if patient else "",
        ),
        detail={"by": "nhs-number", "found": 1 if patient else 0, **(detail or {})},
        context=context,
    )
    return patient


SEARCH_RESULT_CAP = 5


@dataclass(frozen=True)
class SearchResult:
    patients: list[Patient]
    too_many: bool  # more people match than the cap: none are shown, the search must narrow


def patient_search_by_demographics(
    *,
    viewer: User,
    family_name: str,
    birth_date: datetime.date,
    postcode: str = "",
    gender: str = "",
    context: AuditContext | None = None,
    actor: AuditActor | None = None,
    detail: dict[str, Any] | None = None,
) -> SearchResult:
    """Find people by family name and date of birth (and postcode or sex); an audited read.

    Exact matches only (case and spacing aside), at most SEARCH_RESULT_CAP
    people: more matches show none and ask for more detail, so the search
    cannot be used to browse. Side effects: one audit event naming the people
    found (ids only; the searched-for name is not kept).
    """
    people = patients_visible_to(viewer).filter(
        Q(family_name__iexact=family_name.strip()), birth_date=birth_date
    )
    if postcode.strip():
        people = people.annotate(
            postcode_plain=Replace(Upper("postcode"), Value(" "), Value(""))
        ).filter(postcode_plain=postcode.replace(" ", "").upper())
    if gender:
        people = people.filter(gender=gender)
    found = list(people.order_by("family_name", "given_names", "id")[: SEARCH_RESULT_CAP + 1])
    too_many = len(found) > SEARCH_RESULT_CAP
    shown = [] if too_many else found
    audit_event_record(
        action=AuditAction.PATIENT_SEARCH,
        actor=actor or actor_for(viewer),
        detail={
            **(detail or {}),
            "by": "demographics",
            "with": sorted(k for k, v in {"postcode": postcode, "sex": gender}.items() if v),
            "found": len(found) if not too_many else f">{SEARCH_RESULT_CAP}",
            "patients": [str(p.public_id) for p in shown],
        },
        context=context,
    )
    return SearchResult(shown, too_many)


def audit_subject_of(patient: Patient) -> AuditSubject:
    """The person as the audit trail names them: public id, NHS number, registered practice."""
    return AuditSubject(
        patient_id=patient.public_id,
        nhs_number=patient.nhs_number,
        gp_ods=patient.registered_gp_ods,
    )


def patient_or_denied(
    *,
    viewer: User,
    patient_id: str,
    context: AuditContext | None,
    asked: str,
    actor: AuditActor | None = None,
) -> Patient:
    """The person, or an audited denial (written before the error leaves, so it commits).

    Call it outside any transaction that the error would roll back.
    """
    try:
        return patient_get_for_viewer(viewer=viewer, patient_id=patient_id)
    except PatientNotFound:
        audit_event_record(
            action=AuditAction.ACCESS_DENIED,
            actor=actor or actor_for(viewer),
            outcome=AuditOutcome.DENIED,
            detail={"asked": asked, "patient": str(patient_id)[:40], "reason": "not-found"},
            context=context,
        )
        raise
