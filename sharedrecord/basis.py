"""The access basis: what a viewer is offered for a person, and recording the one chosen.

The decisions (which kinds, what each needs, what goes to review) are
access.py's; this module reads the form's values, asks those rules, and
writes the AccessBasis row and its audit event.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.trail import AuditContext, audit_event_record
from sharedrecord.access import (
    BASIS_WORDS_MIN,
    Relationship,
    access_basis_current,
    basis_is_self_claimed,
    basis_kind_allowed,
    basis_needs_review,
    claimed_role_acceptable,
    justification_acceptable,
    override_reason_acceptable,
    relationships_of,
    session_key_hash,
)
from sharedrecord.auditing import actor_for
from sharedrecord.models import (
    AccessBasis,
    BasisKind,
    Patient,
    User,
)
from sharedrecord.search import audit_subject_of, patient_or_denied


@dataclass(frozen=True)
class BasisChoice:
    """What the access basis page offers this viewer for this person."""

    patient: Patient
    relationships: list[Relationship]
    consent_model: str
    current: AccessBasis | None


def access_basis_options(
    *, viewer: User, patient_id: str, session_key: str, context: AuditContext | None = None
) -> BasisChoice:
    """The person's identity and the relationships the feeds show, before any clinical data.

    An audited read: the page shows who the person is and which of the
    viewer's organisation's contacts the feeds hold, so it writes one event
    (identity-view, naming the relationships shown), or an audited denial
    when the person cannot be found.
    """
    patient = patient_or_denied(
        viewer=viewer, patient_id=patient_id, context=context, asked="access-basis"
    )
    relationships = relationships_of(viewer=viewer, patient=patient)
    audit_event_record(
        action=AuditAction.IDENTITY_VIEW,
        actor=actor_for(viewer),
        subject=audit_subject_of(patient),
        detail={"relationships": sorted({r.kind for r in relationships})},
        context=context,
    )
    return BasisChoice(
        patient=patient,
        relationships=relationships,
        consent_model=settings.CONSENT_MODEL,
        current=access_basis_current(viewer=viewer, patient=patient, session_key=session_key),
    )


def access_basis_record(
    *,
    viewer: User,
    patient_id: str,
    session_key: str,
    kind: BasisKind,
    claimed_relationship: str = "",
    reason_code: str = "",
    reason_text: str = "",
    context: AuditContext | None = None,
    launched_from: str = "",
) -> AccessBasis:
    """Record why this viewer reads this person's record now; it lasts for this session.

    The rules are access.py's (the basis for reading): a kind it allows
    (basis_kind_allowed); without a relationship in the feeds, the viewer's
    described role, kept as self-claimed (basis_is_self_claimed,
    claimed_role_acceptable); for emergency access, an HL7 v3 override reason
    and words (override_reason_acceptable, justification_acceptable), lasting
    BREAK_GLASS_HOURS. What basis_needs_review flags goes to the privacy
    officer's review (audit detail `needs_review`).
    Raises ValidationError naming the field. Side effects: one AccessBasis row
    and one audit event (access-basis or break-glass), committed together;
    a basis recorded by a signed launch names the system (`launched_from`).
    """
    if not session_key:
        raise ValidationError("Sign in again to record the basis for access.")
    patient = patient_or_denied(
        viewer=viewer, patient_id=patient_id, context=context, asked="access-basis"
    )
    relationships = relationships_of(viewer=viewer, patient=patient)
    errors: dict[str, str] = {}
    if not basis_kind_allowed(kind):
        errors["kind"] = "Choose the basis for viewing this record."
    claimed = claimed_relationship.strip()[:500]
    reason_text = reason_text.strip()[:500]
    self_claimed = basis_is_self_claimed(kind=kind, relationships=relationships)
    if self_claimed and not claimed_role_acceptable(claimed):
        errors["claimed_relationship"] = (
            f"Describe your role in this person's care (at least {BASIS_WORDS_MIN} characters)"
        )
    if kind == BasisKind.BREAK_GLASS:
        if not override_reason_acceptable(reason_code):
            errors["reason_code"] = "Choose why consent cannot be obtained"
        if not justification_acceptable(reason_text):
            errors["reason_text"] = (
                f"Explain why you need emergency access (at least {BASIS_WORDS_MIN} characters)"
            )
    if errors:
        raise ValidationError(errors)
    now = timezone.now()
    hours = (
        settings.BREAK_GLASS_HOURS if kind == BasisKind.BREAK_GLASS else settings.ACCESS_BASIS_HOURS
    )
    with transaction.atomic():
        basis = AccessBasis(
            user=viewer,
            patient=patient,
            session_key_hash=session_key_hash(session_key),
            kind=kind,
            relationships=sorted({r.kind for r in relationships}),
            self_claimed=self_claimed,
            reason_code=reason_code if kind == BasisKind.BREAK_GLASS else "",
            reason_text=reason_text if kind == BasisKind.BREAK_GLASS else claimed,
            created_at=now,
            expires_at=now + datetime.timedelta(hours=hours),
        )
        basis.full_clean()
        basis.save()
        audit_event_record(
            action=AuditAction.BREAK_GLASS
            if kind == BasisKind.BREAK_GLASS
            else AuditAction.ACCESS_BASIS,
            actor=actor_for(viewer),
            subject=audit_subject_of(patient),
            purpose="ETREAT" if kind == BasisKind.BREAK_GLASS else "TREAT",
            detail={
                "basis": str(basis.public_id),
                "kind": str(kind),
                "consent_model": settings.CONSENT_MODEL,
                "relationships": basis.relationships,
                "self_claimed": self_claimed,
                "reason_code": basis.reason_code,
                "reason_text": basis.reason_text,
                "expires_at": basis.expires_at.isoformat(),
                "needs_review": basis_needs_review(kind=kind, relationships=relationships),
                **({"launched_from": launched_from} if launched_from else {}),
            },
            context=context,
        )
    return basis
