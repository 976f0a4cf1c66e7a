"""Writes to the opt-out registry. An opt-out removes the whole record in the same transaction.

Opt-out wins every race: each change takes the person's lock
(sharedrecord.entries.patient_lock), the same one the ingestion upsert
takes before it asks the gate, so whichever commits first, the other sees it.

Each practice holds its own entry for a person; the person is opted out while
any entry is active. A practice records and withdraws only its own entry, and
every answer it gets is computed from that entry alone, so it learns nothing
about other practices' entries.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditActor, AuditContext, AuditSubject, audit_event_record
from optout.models import PROGRAMME_ROUTES, OptOut, OptOutChange, OptOutRoute, OptOutStatus
from optout.selectors import PersonIdentity, Registration, optout_registration_of
from sharedrecord.access import (
    optout_objections_office_for,
    optout_practice_for,
    optout_practice_may_record,
)
from sharedrecord.auditing import actor_for
from sharedrecord.entries import patient_lock, patient_purge
from sharedrecord.exceptions import PermissionDenied
from sharedrecord.identity import identity_numbers_joined, identity_snapshots_clear
from sharedrecord.matching import nhs_number_is_valid, nhs_number_normalise
from sharedrecord.models import Organisation, OrganisationKind, User
from sharedrecord.transactions import deadlock_retried

# Apps that hold personal data outside the record (ingestion's queue and raw
# messages) register a purger here at start-up; optout cannot import them.
Purger = Callable[[str], dict[str, int]]
_PURGERS: list[Purger] = []

NOT_REGISTERED_HERE = "This person is not registered with your practice."
NO_OWN_ENTRY = "There is no opt-out recorded by your practice for this NHS number."
# Who records a change that the registration authority caused (no person did).
REGISTRATION_SYSTEM = "registration-authority"
# The detail that puts an opt-out change on the programme's review queue.
REVIEW_REGISTRATION_UNKNOWN = {"needs_review": True, "review_reason": "registration-unknown"}


def optout_purger_register(purger: Purger) -> None:
    """Add a function that removes what its app holds for an NHS number (idempotent)."""
    if purger not in _PURGERS:
        _PURGERS.append(purger)


@dataclass(frozen=True)
class OptOutResult:
    optout: OptOut
    changed: bool


def practice_of(user: User) -> Organisation:
    """The GP practice this user may record opt-outs for, or PermissionDenied.

    The user must belong to a GP practice and hold the object permission on it
    (granted in the admin); superusers and global permissions do not count.
    """
    practice = optout_practice_for(user)
    if practice is None:
        raise PermissionDenied(
            "Only staff of a GP practice with the opt-out permission may do this."
        )
    return practice


def objections_office_of(user: User) -> Organisation:
    """The programme organisation this user records objections for, or PermissionDenied."""
    office = optout_objections_office_for(user)
    if office is None:
        raise PermissionDenied("Only the programme's objections officers may do this.")
    return office


def _valid_number(nhs_number: str) -> str:
    number = nhs_number_normalise(nhs_number)
    if not nhs_number_is_valid(number):
        raise ValidationError({"nhs_number": "Enter a valid 10-digit NHS number."})
    return number


def _own_entry(number: str, practice: Organisation) -> OptOut | None:
    return OptOut.objects.select_for_update().filter(nhs_number=number, practice=practice).first()


# ------------------------------------------------------------------ the check before confirming


@dataclass(frozen=True)
class OptOutCheck:
    """What the person confirming an opt-out is shown first.

    `practice` is the practice the opt-out is recorded for; `identity` is who
    the number is in the record, or None when it matches no record held.
    `registration_known` is False when the record does not know where the
    person is registered: the opt-out then goes to the programme's review.
    """

    nhs_number: str
    practice: Organisation
    registration_known: bool
    identity: PersonIdentity | None


def _check_audit(
    *,
    actor: AuditActor,
    number: str,
    registration: Registration,
    by: str,
    refused: str = "",
    context: AuditContext | None,
) -> None:
    audit_event_record(
        action=AuditAction.IDENTITY_VIEW,
        actor=actor,
        outcome=AuditOutcome.DENIED if refused else AuditOutcome.SUCCESS,
        # A refused check names no practice: the asking practice's privacy officer
        # reads its own staff's events, and the refusal must not say where the
        # person is registered. The programme's officers see the whole trail.
        subject=AuditSubject(
            patient_id=registration.patient_id,
            nhs_number=number,
            gp_ods="" if refused else registration.registered_gp_ods,
        ),
        detail={
            "check": "opt-out",
            "by": by,
            "found": registration.patient_id is not None,
            "shown": registration.identity is not None and not refused,
            **(
                {"refused": refused}
                if refused
                else {"registration": "known" if registration.registered_gp_ods else "unknown"}
            ),
        },
        context=context,
    )


def optout_check(
    *,
    nhs_number: str,
    practice: Organisation,
    viewer: User,
    context: AuditContext | None = None,
) -> OptOutCheck:
    """Who an NHS number is in the record, shown to a practice before it confirms an opt-out.

    An audited read: one identity-view event (detail check "opt-out"), also
    when refused. Someone registered with another practice is refused with
    PermissionDenied, without saying where and without showing who they are;
    call it outside any transaction that the error would roll back, so the
    event is kept.
    """
    number = _valid_number(nhs_number)
    registration = optout_registration_of(nhs_number=number)
    allowed = optout_practice_may_record(
        practice=practice, registered_gp_ods=registration.registered_gp_ods
    )
    _check_audit(
        actor=actor_for(viewer),
        number=number,
        registration=registration,
        by="practice",
        refused="" if allowed else "not-registered-here",
        context=context,
    )
    if not allowed:
        raise PermissionDenied(NOT_REGISTERED_HERE)
    return OptOutCheck(
        nhs_number=number,
        practice=practice,
        registration_known=bool(registration.registered_gp_ods),
        identity=registration.identity,
    )


# ------------------------------------------------------------------ recording and withdrawing


def _record(
    optout: OptOut,
    *,
    practice: Organisation,
    route: OptOutRoute,
    note: str,
    recorded_by: User | None,
    recorded_by_system: str,
    registration_known: bool,
    context: AuditContext | None,
) -> OptOutResult:
    """Make the entry active, remove the person's record, audit it (caller holds the lock)."""
    number = optout.nhs_number
    purged = patient_purge(nhs_number=number)
    joined_sources: set[str] = set()
    # The same person under a number a standing merge or link joins to this one.
    joined = identity_numbers_joined(nhs_number=number)
    for other in sorted(joined - {number}):
        patient_lock(nhs_number=other)
        joined_sources |= set(patient_purge(nhs_number=other).source_ods)
    identity_snapshots_clear(nhs_numbers=joined)
    optout.purged_source_ods = sorted(
        set(optout.purged_source_ods) | set(purged.source_ods) | joined_sources
    )
    _apply_change(
        optout, OptOutStatus.OPTED_OUT, practice, route, note, recorded_by, recorded_by_system
    )
    removed = dict(purged.counts)
    for purger in _PURGERS:
        removed.update(purger(number))
    detail: dict[str, Any] = {
        "change": "opted-out",
        "route": route,
        "optout": str(optout.public_id),
        "removed": removed,
    }
    if route in PROGRAMME_ROUTES:
        detail["on_behalf_of"] = practice.ods_code
    if not registration_known:
        detail.update(REVIEW_REGISTRATION_UNKNOWN)
    audit_event_record(
        action=AuditAction.OPTOUT_CHANGE,
        actor=_actor(recorded_by, recorded_by_system, practice),
        subject=AuditSubject(
            patient_id=purged.patient_id, nhs_number=number, gp_ods=practice.ods_code
        ),
        detail=detail,
        context=context,
    )
    return OptOutResult(optout, changed=True)


@deadlock_retried
@transaction.atomic
def optout_register(
    *,
    nhs_number: str,
    practice: Organisation,
    route: OptOutRoute,
    note: str = "",
    recorded_by: User | None = None,
    recorded_by_system: str = "",
    context: AuditContext | None = None,
) -> OptOutResult:
    """Record the practice's opt-out for a person and remove their whole record, in one transaction.

    Re-recording the practice's active opt-out returns it unchanged; what
    other practices hold makes no difference to the answer (an opt-out held
    elsewhere just gains this practice's entry). A practice may record an
    opt-out for its own registered patient, or for someone whose registered
    practice the record does not know (the change is then flagged for the
    programme's review); anyone else raises PermissionDenied without saying
    where they are registered. Side effects: the record, parked items and
    pending raw payloads for the person are removed; one audit event. Run
    again (deadlock_retried) if PostgreSQL ends it to break a deadlock with a
    feed correcting an NHS number that a merge joins to this one.
    """
    number = _valid_number(nhs_number)
    patient_lock(nhs_number=number)
    own = _own_entry(number, practice)
    if own is not None and own.status == OptOutStatus.OPTED_OUT:
        return OptOutResult(own, changed=False)
    registered = optout_registration_of(nhs_number=number).registered_gp_ods
    if not optout_practice_may_record(practice=practice, registered_gp_ods=registered):
        raise PermissionDenied(NOT_REGISTERED_HERE)
    return _record(
        own or OptOut(nhs_number=number),
        practice=practice,
        route=route,
        note=note,
        recorded_by=recorded_by,
        recorded_by_system=recorded_by_system,
        registration_known=bool(registered),
        context=context,
    )


@transaction.atomic
def optout_withdraw(
    *,
    nhs_number: str,
    practice: Organisation,
    route: OptOutRoute,
    note: str = "",
    recorded_by: User | None = None,
    recorded_by_system: str = "",
    context: AuditContext | None = None,
) -> OptOutResult:
    """Record that the person opts back in, on the practice's own entry only.

    Without an entry of the practice the answer is the same ValidationError
    whatever other practices hold. The person stays opted out while another
    practice's entry is active. Nothing comes back by itself: the record fills
    again as sources send updates. Side effects: one audit event.
    """
    number = _valid_number(nhs_number)
    patient_lock(nhs_number=number)
    optout = _own_entry(number, practice)
    if optout is None:
        raise ValidationError({"nhs_number": NO_OWN_ENTRY})
    if optout.status == OptOutStatus.OPTED_IN:
        return OptOutResult(optout, changed=False)
    _apply_change(
        optout, OptOutStatus.OPTED_IN, practice, route, note, recorded_by, recorded_by_system
    )
    audit_event_record(
        action=AuditAction.OPTOUT_CHANGE,
        actor=_actor(recorded_by, recorded_by_system, practice),
        subject=AuditSubject(nhs_number=number, gp_ods=practice.ods_code),
        detail={"change": "opted-in", "route": route, "optout": str(optout.public_id)},
        context=context,
    )
    return OptOutResult(optout, changed=True)


# ------------------------------------------------------------------ objections (programme team)


def _objection_practice(registration: Registration, practice_ods: str) -> Organisation:
    """The practice an objection is recorded for: the registered one, else the one named."""
    named = practice_ods.strip().upper()
    registered = registration.registered_gp_ods
    if registered and named and named != registered:
        raise ValidationError(
            {
                "practice": "This person is registered with a different practice. "
                "Leave the practice blank to record it for their registered practice."
            }
        )
    if not registered and not named:
        raise ValidationError(
            {
                "practice": "Enter the ODS code of the person's GP practice: "
                "the shared care record does not know where they are registered."
            }
        )
    practice = Organisation.objects.filter(
        ods_code=registered or named, kind=OrganisationKind.GP_PRACTICE
    ).first()
    if practice is None and registered:
        raise ValidationError(
            {
                "practice": "The person's registered practice does not take part in the "
                "shared care record, so the objection cannot be recorded here."
            }
        )
    if practice is None:
        raise ValidationError(
            {"practice": "Enter the ODS code of a GP practice in the shared care record."}
        )
    return practice


def optout_objection_check(
    *,
    nhs_number: str,
    practice_ods: str = "",
    officer: User,
    context: AuditContext | None = None,
) -> OptOutCheck:
    """Who an NHS number is and which practice an objection would be recorded for.

    For the programme's objections officers, before they confirm. An audited
    read: one identity-view event (detail check "opt-out", by "programme"),
    also when the practice cannot be settled (then ValidationError, and
    nobody is shown); call it outside any transaction that the error would
    roll back.
    """
    objections_office_of(officer)
    number = _valid_number(nhs_number)
    registration = optout_registration_of(nhs_number=number)
    try:
        practice = _objection_practice(registration, practice_ods)
    except ValidationError:
        _check_audit(
            actor=actor_for(officer), number=number, registration=registration,
            by="programme", refused="practice-not-settled", context=context,
        )  # fmt: skip
        raise
    _check_audit(
        actor=actor_for(officer), number=number, registration=registration, by="programme",
        context=context,
    )  # fmt: skip
    return OptOutCheck(
        nhs_number=number,
        practice=practice,
        registration_known=bool(registration.registered_gp_ods),
        identity=registration.identity,
    )


@deadlock_retried
@transaction.atomic
def optout_objection_register(
    *,
    nhs_number: str,
    route: OptOutRoute,
    practice_ods: str = "",
    note: str = "",
    recorded_by: User,
    context: AuditContext | None = None,
) -> OptOutResult:
    """Record an objection the programme team took by phone or e-mail, for the person's practice.

    The entry is the registered practice's own (it sees it on its list and may
    opt the person back in); when the record does not know the registration
    the officer names the practice and the change is flagged for the
    programme's review. Recording it again changes nothing. Only the
    programme's objections officers may (PermissionDenied otherwise). Side
    effects: as optout_register.
    """
    objections_office_of(recorded_by)
    number = _valid_number(nhs_number)
    if route not in PROGRAMME_ROUTES:
        raise ValidationError({"route": "Choose how the objection was received."})
    patient_lock(nhs_number=number)
    registration = optout_registration_of(nhs_number=number)
    practice = _objection_practice(registration, practice_ods)
    own = _own_entry(number, practice)
    if own is not None and own.status == OptOutStatus.OPTED_OUT:
        return OptOutResult(own, changed=False)
    return _record(
        own or OptOut(nhs_number=number),
        practice=practice,
        route=route,
        note=note,
        recorded_by=recorded_by,
        recorded_by_system="",
        registration_known=bool(registration.registered_gp_ods),
        context=context,
    )


# ------------------------------------------------------------------ registration moves


@transaction.atomic
def optout_holding_move(
    *,
    nhs_number: str,
    to_practice: Organisation,
    asserted_by: Organisation,
    asserted_at: datetime.datetime | None,
    context: AuditContext | None = None,
) -> int:
    """Move every active opt-out of other practices for a person to their new practice.

    For ingestion, when the registration authority `asserted_by` moves the
    person; the caller holds patient_lock (taken again here, which is
    harmless). Steps:
    1. Take the person's entries, locked. Entries of other practices that are
       not active stay where they are. An assertion made (`asserted_at`, the
       authority's own time) no later than the one that last moved the
       person's entry is stale (a replayed or late message) and moves nothing.
    2. The first active entry moves to `to_practice` if it has none; any
       other merges into `to_practice`'s entry: its history and removed-data
       sources go with it and the emptied entry is deleted.
    3. Each move is one change (route registration-moved, no note) on the
       entry, which is then active: the person stays opted out, and the new
       practice may opt them back in.
    Returns how many entries moved; 0 (and no event) when none did.
    Side effects: one audit event (change "holding-moved", from/to ODS codes).
    """
    number = _valid_number(nhs_number)
    if to_practice.kind != OrganisationKind.GP_PRACTICE:
        raise ValidationError("An opt-out can only move to a GP practice.")
    patient_lock(nhs_number=number)
    entries = list(
        OptOut.objects.select_for_update(of=("self",))
        .filter(nhs_number=number)
        .select_related("practice")
        .order_by("id")
    )
    moved_by = [e.holding_asserted_at for e in entries if e.holding_asserted_at is not None]
    if asserted_at is not None and moved_by and asserted_at <= max(moved_by):
        return 0
    own = next((e for e in entries if e.practice_id == to_practice.pk), None)
    moving = [
        e for e in entries if e.practice_id != to_practice.pk and e.status == OptOutStatus.OPTED_OUT
    ]
    if not moving:
        return 0
    from_ods = sorted({e.practice.ods_code for e in moving})
    target = own or moving[0]
    for entry in moving:
        if entry is not target:
            OptOutChange.objects.filter(optout=entry).update(optout=target)
            target.purged_source_ods = sorted(
                set(target.purged_source_ods) | set(entry.purged_source_ods)
            )
            entry.delete()
        _apply_change(
            target, OptOutStatus.OPTED_OUT, to_practice, OptOutRoute.REGISTRATION_MOVED, "",
            None, REGISTRATION_SYSTEM,
        )  # fmt: skip
    if asserted_at is not None:
        target.holding_asserted_at = asserted_at
        target.save(update_fields=["holding_asserted_at"])
    audit_event_record(
        action=AuditAction.OPTOUT_CHANGE,
        actor=AuditActor.system("ingestion", org_ods=asserted_by.ods_code),
        subject=AuditSubject(nhs_number=number, gp_ods=to_practice.ods_code),
        detail={
            "change": "holding-moved",
            "route": OptOutRoute.REGISTRATION_MOVED,
            "from": from_ods,
            "to": to_practice.ods_code,
            "moved": len(moving),
            "optout": str(target.public_id),
        },
        context=context,
    )
    return len(moving)


# ------------------------------------------------------------------ shared steps


def _apply_change(
    optout: OptOut,
    status: OptOutStatus,
    practice: Organisation,
    route: OptOutRoute,
    note: str,
    recorded_by: User | None,
    recorded_by_system: str,
) -> None:
    now = timezone.now()
    optout.status, optout.practice, optout.route = status, practice, route
    optout.note, optout.changed_at = note[:500], now
    optout.full_clean()
    optout.save()
    OptOutChange.objects.create(
        optout=optout,
        status=status,
        practice=practice,
        route=route,
        note=note[:500],
        recorded_by=recorded_by,
        recorded_by_system=recorded_by_system[:100],
        recorded_at=now,
    )


def _actor(recorded_by: User | None, system: str, practice: Organisation) -> AuditActor:
    if recorded_by is not None:
        return actor_for(recorded_by)
    return AuditActor.system(system, org_ods=practice.ods_code)


def optout_denied_audit(
    *, user: User, action: str, reason: str = "", context: AuditContext | None = None
) -> None:
    """Record a refused attempt to change the registry (in its own transaction)."""
    with transaction.atomic():
        audit_event_record(
            action=AuditAction.OPTOUT_CHANGE,
            actor=actor_for(user),
            outcome=AuditOutcome.DENIED,
            detail={"change": action, **({"reason": reason} if reason else {})},
            context=context,
        )
