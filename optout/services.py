"""Writes to the opt-out registry. An opt-out removes the whole record in the same transaction.

Opt-out wins every race: each change takes the person's lock
(sharedrecord.services.patient_lock), the same one the ingestion upsert
takes before it asks the gate, so whichever commits first, the other sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from audit.services import AuditActor, AuditContext, AuditSubject, audit_event_record
from optout.models import OptOut, OptOutChange, OptOutRoute, OptOutStatus
from sharedrecord.auditing import actor_for
from sharedrecord.exceptions import PermissionDenied
from sharedrecord.matching import nhs_number_is_valid, nhs_number_normalise
from sharedrecord.models import Organisation, Patient, User
from sharedrecord.selectors import optout_practice_for
from sharedrecord.services import patient_lock, patient_purge

# Apps that hold personal data outside the record (ingestion's queue and raw
# messages) register a purger here at start-up; optout cannot import them.
Purger = Callable[[str], dict[str, int]]
_PURGERS: list[Purger] = []


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


def _valid_number(nhs_number: str) -> str:
    number = nhs_number_normalise(nhs_number)
    if not nhs_number_is_valid(number):
        raise ValidationError({"nhs_number": "Enter a valid 10-digit NHS number."})
    return number


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
    """Record an opt-out and remove the person's whole record, in one transaction.

    Re-recording an active opt-out returns it unchanged. A practice may record
    an opt-out for its own registered patient, or for someone whose registered
    practice the record does not know. Side effects: the record, parked items
    and pending raw payloads for the person are removed; one audit event.
    """
    number = _valid_number(nhs_number)
    patient_lock(nhs_number=number)
    existing = OptOut.objects.select_for_update().filter(nhs_number=number).first()
    if existing is not None and existing.status == OptOutStatus.OPTED_OUT:
        return OptOutResult(existing, changed=False)
    registered = (
        Patient.objects.filter(nhs_number=number)
        .values_list("registered_gp_ods", flat=True)
        .first()
    )
    if registered and registered != practice.ods_code:
        raise PermissionDenied("This person is registered with another practice.")
    optout = existing or OptOut(nhs_number=number)
    _apply_change(
        optout, OptOutStatus.OPTED_OUT, practice, route, note, recorded_by, recorded_by_system
    )
    purged = patient_purge(nhs_number=number)
    optout.purged_source_ods = sorted(set(optout.purged_source_ods) | set(purged.source_ods))
    optout.save(update_fields=["purged_source_ods"])
    removed = dict(purged.counts)
    for purger in _PURGERS:
        removed.update(purger(number))
    audit_event_record(
        action=AuditAction.OPTOUT_CHANGE,
        actor=_actor(recorded_by, recorded_by_system, practice),
        subject=AuditSubject(
            patient_id=purged.patient_id, nhs_number=number, gp_ods=practice.ods_code
        ),
        detail={
            "change": "opted-out",
            "route": route,
            "optout": str(optout.public_id),
            "removed": removed,
        },
        context=context,
    )
    return OptOutResult(optout, changed=True)


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
    """Record that the person opts back in; only the practice holding the entry may.

    Nothing comes back by itself: the record fills again as sources send updates.
    Side effects: one audit event.
    """
    number = _valid_number(nhs_number)
    patient_lock(nhs_number=number)
    optout = OptOut.objects.select_for_update().filter(nhs_number=number).first()
    if optout is None:
        raise ValidationError({"nhs_number": "There is no opt-out recorded for this NHS number."})
    if optout.practice_id != practice.pk:
        raise PermissionDenied("Only the practice holding this opt-out may record an opt-in.")
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


def optout_denied_audit(*, user: User, action: str, context: AuditContext | None = None) -> None:
    """Record a refused attempt to change the registry (in its own transaction)."""
    with transaction.atomic():
        audit_event_record(
            action=AuditAction.OPTOUT_CHANGE,
            actor=actor_for(user),
            outcome=AuditOutcome.DENIED,
            detail={"change": action},
            context=context,
        )
