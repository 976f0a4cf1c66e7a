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
from audit.services import AuditContext, audit_event_record
from sharedrecord.access import (
    Relationship,
    access_basis_current,
    relationships_of,
    session_key_hash,
)
from sharedrecord.auditing import actor_for
from sharedrecord.models import (
    AccessBasis,
    BasisKind,
    OverrideReason,
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
) -> AccessBasis:
    """Record why this viewer reads this person's record now; it lasts for this session.

    - Direct care (implied consent model) or the person's permission now
      (explicit model), whichever the deployment chose; the other is refused.
    - Without a relationship in the feeds, the viewer must describe theirs:
      it is kept as self-claimed and goes to the privacy officer's review.
    - Emergency access needs an HL7 v3 override reason and words; it lasts
      BREAK_GLASS_HOURS and goes to review too.
    Raises ValidationError naming the field. Side effects: one AccessBasis row
    and one audit event (access-basis or break-glass), committed together.
    """
    if not session_key:
        raise ValidationError("Sign in again to record the basis for access.")
    patient = patient_or_denied(
        viewer=viewer, patient_id=patient_id, context=context, asked="access-basis"
    )
    relationships = relationships_of(viewer=viewer, patient=patient)
    errors: dict[str, str] = {}
    expected = BasisKind.DIRECT_CARE if settings.CONSENT_MODEL == "implied" else BasisKind.CONSENT
    if kind not in (expected, BasisKind.BREAK_GLASS):
        errors["kind"] = "Choose the basis for viewing this record."
    claimed = claimed_relationship.strip()[:500]
    reason_text = reason_text.strip()[:500]
    self_claimed = kind != BasisKind.BREAK_GLASS and not relationships
    if self_claimed and len(claimed) < 10:
        errors["claimed_relationship"] = (
            "Describe your role in this person's care (at least 10 characters)"
        )
    if kind == BasisKind.BREAK_GLASS:
        if reason_code not in OverrideReason.values:
            errors["reason_code"] = "Choose why consent cannot be obtained"
        if len(reason_text) < 10:
            errors["reason_text"] = "Explain why you need emergency access (at least 10 characters)"
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
                "review": self_claimed or kind == BasisKind.BREAK_GLASS,
            },
            context=context,
        )
    return basis
