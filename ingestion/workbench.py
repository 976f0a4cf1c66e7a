"""The data quality workbench: list, open and decide the entries feeds parked.

A case is the entries one message parked for one person (MatchQueueItem.group).
A data quality officer (access.data_quality_scope_for) sees only what is
needed to decide who the person is: the identifiers and demographics sent,
the people the record holds who may be meant (matching.patient_candidates,
with a score), and why the entries were parked; never their clinical content.
Each opening is an audited read. The decisions:

- file to a person (by NHS number or a chosen candidate, with a reason): the
  same agreement check, opt-out gate and upsert as a feed, under the person's
  lock; an opted-out person gets nothing (the case closes as blocked);
- reject, with a reason from REJECT_REASONS;
- ask the sender to correct and re-send, with a reason from CORRECTION_REASONS.

The programme's officers also merge and link people, and undo any merge or
link (a feed's A40 included) exactly (sharedrecord.identity).

Every decision closes the case's entries (their resource is cleared), writes
an issue on the message's receipt that the sender reads (codes, never the
officer's note), and one audit event.
"""

from __future__ import annotations

import datetime
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.postgres.aggregates import ArrayAgg
from django.db import transaction
from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from audit.trail import (
    AuditContext,
    AuditSubject,
    PendingEvent,
    audit_event_record,
    audit_events_record,
)
from ingestion.fhir.profile import NHS_NUMBER_SYSTEM
from ingestion.models import FeedMessage, MatchQueueItem, ParkedDigest, ParkReason, ParkState
from ingestion.parked import entry_data_rebuilt
from optout.selectors import optout_blocks
from sharedrecord.access import DataQualityScope, organisation_may_send_feeds
from sharedrecord.auditing import actor_for
from sharedrecord.demographics import demographics_of, patient_demographics_refresh
from sharedrecord.entries import (
    UpsertResult,
    entries_upsert,
    entry_remove,
    patient_create,
    patient_lock,
)
from sharedrecord.entrydata import EntryData
from sharedrecord.exceptions import DomainError
from sharedrecord.identity import Merged, identity_operation_undo, patients_merge
from sharedrecord.matching import (
    Candidate,
    SentIdentity,
    nhs_number_is_valid,
    nhs_number_normalise,
    patient_candidates,
)
from sharedrecord.models import Entry, IdentityKind, IdentityOperation, Patient, User, is_uuid
from sharedrecord.transactions import deadlock_retried

# What the sender is told, by code: the officer's own words stay with us.
REJECT_REASONS = {
    "not-for-this-record": "The entries do not belong in the shared care record.",
    "duplicate": "The entries repeat what the record already holds.",
    "test-data": "The entries are test or training data.",
    "person-not-identifiable": "The person cannot be identified from what was sent.",
}
CORRECTION_REASONS = {
    "send-nhs-number": "Send the person's NHS number.",
    "check-nhs-number": "Check the NHS number: it fails its check digit or names someone else.",
    "check-birth-date": "Check the date of birth: it disagrees with the record.",
    "send-patient": "Send the Patient resource the entries refer to.",
}
# Words a filing's reason needs at least (it is kept for governance).
REASON_MIN = 10
CASES_SHOWN = 100


class WorkbenchRefused(DomainError):
    """A decision the workbench cannot take: says why with a code, never a value."""

    def __init__(self, message: str, *, code: str, status: int = 400) -> None:
        super().__init__(message, code=code)
        self.status = status


class CaseNotFound(DomainError):
    """No such case, or not in the officer's scope: the same answer for both."""

    code = "not_found"
    status = 404


@dataclass(frozen=True)
class ParkedCase:
    """One case as a list shows it: who sent it, why it waits, how many entries; no person."""

    group: uuid.UUID
    sender_ods: str
    sender_name: str
    receipt: uuid.UUID
    reason: str
    state: str
    entries: int
    resource_types: tuple[tuple[str, int], ...]
    parked_at: datetime.datetime
    decided_at: datetime.datetime | None
    decision_code: str

    @property
    def reason_label(self) -> str:
        return str(ParkReason(self.reason).label)

    @property
    def state_label(self) -> str:
        return str(ParkState(self.state).label)

    @property
    def waiting(self) -> datetime.timedelta:
        return timezone.now() - self.parked_at

    @property
    def overdue(self) -> bool:
        return self.state == ParkState.PARKED and self.waiting > waiting_limit()


@dataclass(frozen=True)
class CaseView:
    """What an officer sees to decide one case: never the entries' clinical content."""

    case: ParkedCase
    sent: SentIdentity
    identifiers: tuple[tuple[str, str], ...]  # (system, value) as sent on the Patient
    patient_source_id: str  # the sender's own id for the person
    candidates: tuple[Candidate, ...]
    fileable: bool


def waiting_limit() -> datetime.timedelta:
    """How long a case may wait before it counts as overdue (WORKBENCH_WAITING_HOURS)."""
    return datetime.timedelta(hours=settings.WORKBENCH_WAITING_HOURS)


def _in_scope(scope: DataQualityScope) -> QuerySet[MatchQueueItem]:
    items = MatchQueueItem.objects.all()
    if scope.organisation_ods is not None:
        items = items.filter(organisation__ods_code=scope.organisation_ods)
    return items


def _cases(items: QuerySet[MatchQueueItem]) -> list[ParkedCase]:
    rows = (
        items.values(
            "group",
            "organisation__ods_code",
            "organisation__name",
            "message__public_id",
            "reason",
            "state",
            "decision_code",
        )
        .annotate(
            entries=Count("id"),
            parked_at=Min("created_at"),
            decided_at=Max("resolved_at"),
            types=ArrayAgg("resource_type"),
        )
        .order_by("parked_at", "group")
    )
    return [
        ParkedCase(
            group=row["group"],
            sender_ods=row["organisation__ods_code"],
            sender_name=row["organisation__name"],
            receipt=row["message__public_id"],
            reason=row["reason"],
            state=row["state"],
            entries=row["entries"],
            resource_types=tuple(sorted(Counter(row["types"]).items())),
            parked_at=row["parked_at"],
            decided_at=row["decided_at"],
            decision_code=row["decision_code"],
        )
        for row in rows
    ]


def parked_cases(
    *, scope: DataQualityScope, state: str = ParkState.PARKED, limit: int = CASES_SHOWN
) -> list[ParkedCase]:
    """The cases in the officer's scope in one state, oldest first (no personal data)."""
    return _cases(_in_scope(scope).filter(state=state))[:limit]


@dataclass(frozen=True)
class WaitingCounts:
    """The officer's front page: cases waiting, and how many of them are overdue."""

    waiting: int
    overdue: int
    by_reason: tuple[tuple[str, int], ...]


def parked_waiting_counts(*, scope: DataQualityScope | None = None) -> WaitingCounts:
    """Cases waiting for a decision, and those waiting longer than WORKBENCH_WAITING_HOURS.

    With no scope, every organisation's: this is the figure for metrics
    (parked_overdue_count).
    """
    items = MatchQueueItem.objects.filter(state=ParkState.PARKED)
    if scope is not None:
        items = _in_scope(scope).filter(state=ParkState.PARKED)
    cutoff = timezone.now() - waiting_limit()
    groups = items.values("group", "reason").annotate(parked_at=Min("created_at"))
    waiting = overdue = 0
    by_reason: Counter[str] = Counter()
    for row in groups:
        waiting += 1
        by_reason[row["reason"]] += 1
        overdue += row["parked_at"] < cutoff
    return WaitingCounts(waiting, overdue, tuple(sorted(by_reason.items())))


def parked_overdue_count() -> int:
    """How many cases have waited longer than WORKBENCH_WAITING_HOURS: for metrics to call."""
    return parked_waiting_counts().overdue


def _case_items(scope: DataQualityScope, group: uuid.UUID) -> list[MatchQueueItem]:
    items = list(
        _in_scope(scope)
        .filter(group=group)
        .select_related("organisation", "message", "message__credential")
        .order_by("entry_index")
    )
    if not items:
        raise CaseNotFound("No such parked case.")
    return items


def _identity_sent(
    items: list[MatchQueueItem],
) -> tuple[SentIdentity, tuple[tuple[str, str], ...], str]:
    """The identifiers and demographics the case's Patient carried (or its NHS number alone).

    A case whose entries name a Patient the sender never sent (unknown-patient)
    takes them from that Patient if the same sender's Patient was itself parked.
    """
    patients = [i for i in items if i.resource_type == "Patient" and i.resource]
    if not patients and items[0].patient_reference:
        earlier = (
            MatchQueueItem.objects.filter(
                organisation=items[0].organisation,
                resource_type="Patient",
                source_id=items[0].patient_reference,
            )
            .exclude(resource={})
            .order_by("-created_at")
            .first()
        )
        patients = [earlier] if earlier is not None else []
    number = next((i.nhs_number_sent for i in items if i.nhs_number_sent), "")
    if not patients:
        return SentIdentity(nhs_number=number), (), items[0].patient_reference
    resource = patients[0].resource
    shown = demographics_of(resource)
    identifiers = tuple(
        (str(i.get("system", ""))[:200], str(i.get("value", ""))[:64])
        for i in resource.get("identifier", [])
        if isinstance(i, dict) and i.get("value")
    )
    if not number:
        number = next((v for s, v in identifiers if s == NHS_NUMBER_SYSTEM), "")
    birth = shown["birth_date"]
    sent = SentIdentity(
        nhs_number=number,
        family=shown["family"],
        given=shown["given"],
        birth_date=datetime.date.fromisoformat(birth) if birth else None,
        postcode=shown["postcode"],
        gender=shown["gender"],
    )
    return sent, identifiers, patients[0].source_id


def parked_case_view(
    *, viewer: User, scope: DataQualityScope, group: uuid.UUID, context: AuditContext | None = None
) -> CaseView:
    """Open one case: what was sent about the person, the candidates and why it waits.

    Side effects: one audit event (match-queue-view) naming the case, the
    NHS number sent (when valid) and the candidates shown, written before
    anything is returned.
    """
    items = _case_items(scope, group)
    (case,) = _cases(MatchQueueItem.objects.filter(pk__in=[i.pk for i in items]))
    sent, identifiers, source_id = _identity_sent(items)
    candidates = tuple(patient_candidates(sent=sent)) if case.state == ParkState.PARKED else ()
    number = nhs_number_normalise(sent.nhs_number)
    audit_event_record(
        action=AuditAction.MATCH_QUEUE_VIEW,
        actor=actor_for(viewer),
        subject=AuditSubject(nhs_number=number if nhs_number_is_valid(number) else ""),
        detail={
            "case": str(group),
            "reason": case.reason,
            "candidates": [str(c.patient.public_id) for c in candidates],
        },
        source_ods=[case.sender_ods],
        context=context,
    )
    fileable = case.state == ParkState.PARKED and all(i.entry_data for i in items)
    return CaseView(case, sent, identifiers, source_id, candidates, fileable)


# ------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class Decision:
    """What a decision did: the case's new state, and the person filed to (if any)."""

    state: str
    entries: int
    patient: Patient | None = None
    counts: dict[str, int] | None = None


def _waiting_items(scope: DataQualityScope, group: uuid.UUID) -> list[MatchQueueItem]:
    """The case's entries, locked; refused unless every one still waits for a decision."""
    items = _case_items(scope, group)
    locked = list(
        MatchQueueItem.objects.select_for_update()
        .filter(pk__in=[i.pk for i in items], state=ParkState.PARKED)
        .select_related("organisation", "message", "message__credential")
        .order_by("entry_index")
    )
    if not locked:
        raise WorkbenchRefused(
            "This case has already been decided.", code="already_decided", status=409
        )
    return locked


def _close(
    items: list[MatchQueueItem], *, state: str, viewer: User, code: str = "", note: str = "",
    patient: Patient | None = None,
) -> None:  # fmt: skip
    """Close the case's entries: their content is cleared (filed, it lives in the record)."""
    MatchQueueItem.objects.filter(pk__in=[i.pk for i in items]).update(
        state=state,
        resolved_at=timezone.now(),
        decided_by=viewer,
        decision_code=code,
        decision_note=note[:500],
        filed_patient_id=patient.public_id if patient is not None else None,
        resource={},
        entry_data={},
    )


def _receipt_note(
    items: list[MatchQueueItem], *, code: str, severity: str, diagnostics: str,
    counts: dict[str, int],
) -> None:  # fmt: skip
    """Tell the sender on its receipt: an issue naming the first entry, and the counts moved."""
    message = FeedMessage.objects.select_for_update().get(pk=items[0].message_id)
    message.issues = [
        *message.issues,
        {
            "entry": min(i.entry_index for i in items),
            "severity": severity,
            "code": code,
            "diagnostics": diagnostics,
            "expression": [],
        },
    ]
    moved = dict(message.counts)
    moved["parked"] = max(0, moved.get("parked", 0) - len(items))
    for key, value in counts.items():
        moved[key] = moved.get(key, 0) + value
    message.counts = moved
    message.save(update_fields=["issues", "counts"])


def _decision_event(
    viewer: User, items: list[MatchQueueItem], decision: str, *,
    patient: Patient | None = None, code: str = "", context: AuditContext | None,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
) -> None:  # fmt: skip
    sent = items[0].nhs_number_sent
    subject = (
        AuditSubject(
            patient_id=patient.public_id,
            nhs_number=patient.nhs_number,
            gp_ods=patient.registered_gp_ods,
        )
        if patient is not None
        else AuditSubject(nhs_number=sent if nhs_number_is_valid(sent) else "")
    )
    audit_event_record(
        action=AuditAction.MATCH_DECISION,
        actor=actor_for(viewer),
        outcome=outcome,
        subject=subject,
        detail={
            "case": str(items[0].group),
            "message": str(items[0].message.public_id),
            "decision": decision,
            "reason": items[0].reason,
            "code": code,
            "entries": len(items),
        },
        source_ods=[items[0].organisation.ods_code],
        context=context,
    )


@transaction.atomic
def parked_case_file(
    *,
    viewer: User,
    scope: DataQualityScope,
    group: uuid.UUID,
    reason: str,
    nhs_number: str = "",
    patient_id: str = "",
    context: AuditContext | None = None,
) -> Decision:
    """File a case's entries to a person, as the feed would have had it matched.

    The person is named by NHS number or by a candidate's public id. Steps:
    1. Refuse a short reason, an invalid number, an unknown candidate, a
       case already decided, or one parked before its columns were kept.
    2. The sender's data sharing agreement must cover today.
    3. Take the person's lock and ask the opt-out gate: an opted-out person
       gets nothing, and the case closes as blocked.
    4. Find or create the person; remove what the sender marked entered in
       error, upsert the rest (newer versions win, as in a feed), refresh
       the shown demographics if a Patient changed.
    Side effects: the entries, the case closed, the receipt's issue and
    counts, one audit event (match-decision "filed" or "blocked").
    """
    if len(reason.strip()) < REASON_MIN:
        raise WorkbenchRefused(
            f"Say why in at least {REASON_MIN} characters.", code="reason_required"
        )
    if patient_id:
        chosen = (
            Patient.objects.filter(public_id=patient_id).first() if is_uuid(patient_id) else None
        )
        if chosen is None:
            raise WorkbenchRefused("No such person in the record.", code="no_such_person")
        number = chosen.nhs_number
    else:
        number = nhs_number_normalise(nhs_number)
        if not nhs_number_is_valid(number):
            raise WorkbenchRefused("Enter a valid 10-digit NHS number.", code="invalid_nhs_number")
    items = _waiting_items(scope, group)
    organisation = items[0].organisation
    if not organisation_may_send_feeds(organisation):
        raise WorkbenchRefused(
            "The sender's data sharing agreement does not cover today: nothing can be filed.",
            code="agreement_inactive", status=409,
        )  # fmt: skip
    rebuilt = [
        entry_data_rebuilt(
            resource_type=i.resource_type,
            source_id=i.source_id,
            resource=i.resource,
            columns=i.entry_data,
        )
        for i in items
    ]
    data = [d for d in rebuilt if d is not None]
    if len(data) != len(items):
        raise WorkbenchRefused(
            "These entries were parked before filing was possible: ask the sender to re-send.",
            code="cannot_file", status=409,
        )  # fmt: skip
    patient_lock(nhs_number=number)
    if optout_blocks(nhs_number=number):
        _close(items, state=ParkState.BLOCKED, viewer=viewer, note=reason)
        _receipt_note(
            items, code="parked-blocked", severity="information",
            diagnostics=f"{len(items)} parked entries were not stored: the person opted out.",
            counts={"blocked": len(items)},
        )  # fmt: skip
        _decision_event(viewer, items, "blocked", context=context, outcome=AuditOutcome.REJECTED)
        return Decision(ParkState.BLOCKED, len(items))
    patient = Patient.objects.filter(nhs_number=number).first() or patient_create(nhs_number=number)
    counts = _file(items, data, patient)
    _close(items, state=ParkState.FILED, viewer=viewer, note=reason, patient=patient)
    _receipt_note(
        items, code="parked-filed", severity="information",
        diagnostics=f"{len(items)} parked entries were filed by the data quality team.",
        counts=counts,
    )  # fmt: skip
    _decision_event(viewer, items, "filed", patient=patient, context=context)
    return Decision(ParkState.FILED, len(items), patient, counts)


def _file(items: list[MatchQueueItem], data: list[EntryData], patient: Patient) -> dict[str, int]:
    """Store the case's entries for the person, as bundle_apply does (the caller holds the lock)."""
    organisation, message = items[0].organisation, items[0].message
    counts: Counter[str] = Counter()
    kept: list[EntryData] = []
    demographics_changed = False
    for entry in data:
        if entry.status == "entered-in-error":
            removed = entry_remove(
                source_org=organisation, resource_type=entry.resource_type,
                source_id=entry.source_id, version_id=entry.version_id,
                source_updated_at=entry.source_updated_at, entered_in_error_for=patient,
            )  # fmt: skip
            counts["deleted" if removed else "unchanged"] += 1
            demographics_changed |= bool(removed) and entry.resource_type == "Patient"
        else:
            kept.append(entry)
    results = entries_upsert(
        patient=patient, source_org=organisation, source_system=message.credential.system,
        items=kept, feed_message_id=message.public_id,
    )  # fmt: skip
    for entry, result in zip(kept, results, strict=True):
        counts[str(result) if result != UpsertResult.STALE else "unchanged"] += 1
        demographics_changed |= entry.resource_type == "Patient" and result in (
            UpsertResult.CREATED,
            UpsertResult.UPDATED,
        )
    if demographics_changed:
        patient_demographics_refresh(patient=patient)
    return dict(counts)


@transaction.atomic
def parked_case_reject(
    *, viewer: User, scope: DataQualityScope, group: uuid.UUID, code: str, note: str = "",
    context: AuditContext | None = None,
) -> Decision:  # fmt: skip
    """Reject a case: nothing of it is stored, and the sender reads why (the code) on its receipt.

    Side effects: the case closed (its content cleared), the receipt's issue
    and counts (rejected), one audit event.
    """
    if code not in REJECT_REASONS:
        raise WorkbenchRefused("Choose a reason for rejecting.", code="reason_required")
    return _decline(
        viewer, scope, group, state=ParkState.REJECTED, code=code, note=note, context=context,
        receipt_code="parked-rejected", said=REJECT_REASONS[code],
        done="were rejected by the data quality team",
    )  # fmt: skip


@transaction.atomic
def parked_case_correction_request(
    *, viewer: User, scope: DataQualityScope, group: uuid.UUID, code: str, note: str = "",
    context: AuditContext | None = None,
) -> Decision:  # fmt: skip
    """Ask the sender to correct the case's entries and send them again.

    Nothing is stored; the receipt's issue says what to correct (the code and
    its text), for the sender's data quality team and the partner API.
    Side effects: the case closed, the receipt's issue and counts, one audit event.
    """
    if code not in CORRECTION_REASONS:
        raise WorkbenchRefused("Choose what the sender should correct.", code="reason_required")
    return _decline(
        viewer, scope, group, state=ParkState.CORRECTION_REQUESTED, code=code, note=note,
        context=context, receipt_code="parked-correction-requested",
        said=CORRECTION_REASONS[code],
        done="were not stored. Correct them and send them again",
    )  # fmt: skip


def _decline(
    viewer: User, scope: DataQualityScope, group: uuid.UUID, *, state: ParkState, code: str,
    note: str, context: AuditContext | None, receipt_code: str, said: str, done: str,
) -> Decision:  # fmt: skip
    """Close a waiting case storing nothing; its receipt counts it rejected and says why."""
    items = _waiting_items(scope, group)
    _close(items, state=state, viewer=viewer, code=code, note=note)
    _receipt_note(
        items, code=receipt_code, severity="error",
        diagnostics=f"{len(items)} parked entries {done} ({code}): {said}",
        counts={"rejected": len(items)},
    )  # fmt: skip
    _decision_event(viewer, items, state.value, code=code, context=context,
                    outcome=AuditOutcome.REJECTED)  # fmt: skip
    return Decision(state, len(items))


def parked_for_sender(
    *, organisation_ods: str, state: str = "", limit: int = CASES_SHOWN
) -> list[ParkedCase]:
    """A sender's own parked cases and their decisions (the partner API): no content, no person."""
    items = MatchQueueItem.objects.filter(organisation__ods_code=organisation_ods)
    if state:
        items = items.filter(state=state)
    return sorted(_cases(items), key=lambda c: c.parked_at, reverse=True)[:limit]


def parked_entries_of(*, groups: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """The entries of these cases as their sender knows them: index, type and its own id."""
    found: dict[uuid.UUID, list[dict[str, Any]]] = {}
    rows = MatchQueueItem.objects.filter(group__in=groups).order_by("group", "entry_index")
    for group, index, resource_type, source_id in rows.values_list(
        "group", "entry_index", "resource_type", "source_id"
    ):
        found.setdefault(group, []).append(
            {"entry": index, "resourceType": resource_type, "id": source_id}
        )
    return found


# ------------------------------------------------------------------ identity operations


def _programme_only(scope: DataQualityScope) -> None:
    """Whole-person merges and links reach every source's data: the programme's officers only."""
    if scope.organisation_ods is not None:
        raise WorkbenchRefused(
            "Only the programme's data quality officers merge or link people.",
            code="programme_only", status=403,
        )  # fmt: skip


@deadlock_retried
@transaction.atomic
def identity_merge(
    *, viewer: User, scope: DataQualityScope, from_nhs_number: str, to_nhs_number: str,
    reason: str, kind: str = IdentityKind.MERGE, context: AuditContext | None = None,
) -> Merged:  # fmt: skip
    """Merge one person into another (every source's entries move), or link two numbers.

    The same locks and opt-out gate as a feed's A40: both people locked in
    NHS number order; an opt-out on either number wins (nothing moves and both
    records are removed). Recorded so it can be undone exactly (identity_undo).
    Run again if PostgreSQL ends it to break a deadlock with a feed.
    Side effects: the entries moved, one IdentityOperation, one audit event.
    """
    _programme_only(scope)
    if len(reason.strip()) < REASON_MIN:
        raise WorkbenchRefused(
            f"Say why in at least {REASON_MIN} characters.", code="reason_required"
        )
    numbers = [nhs_number_normalise(n) for n in (from_nhs_number, to_nhs_number)]
    if not all(nhs_number_is_valid(n) for n in numbers):
        raise WorkbenchRefused("Enter two valid 10-digit NHS numbers.", code="invalid_nhs_number")
    if numbers[0] == numbers[1]:
        raise WorkbenchRefused("Enter two different NHS numbers.", code="same_nhs_number")
    for number in sorted(numbers):
        patient_lock(nhs_number=number)
    blocked = any(optout_blocks(nhs_number=n) for n in numbers)
    return patients_merge(
        from_nhs_number=numbers[0], to_nhs_number=numbers[1], source_org=None,
        blocked=blocked, actor=actor_for(viewer), reason=reason, kind=kind, context=context,
    )  # fmt: skip


def identity_operations(*, scope: DataQualityScope, limit: int = 50) -> list[IdentityOperation]:
    """The most recent merges and links (feeds' and officers'), newest first."""
    _programme_only(scope)
    return list(
        IdentityOperation.objects.select_related("source_org").order_by("-created_at")[:limit]
    )


@deadlock_retried
@transaction.atomic
def identity_undo(
    *, viewer: User, scope: DataQualityScope, operation_id: uuid.UUID,
    context: AuditContext | None = None,
) -> IdentityOperation:  # fmt: skip
    """Unmerge or unlink: put back exactly what the operation moved (identity_operation_undo).

    Both numbers locked in NHS number order; run again if PostgreSQL ends it
    to break a deadlock with a feed.
    """
    _programme_only(scope)
    operation = IdentityOperation.objects.filter(public_id=operation_id).first()
    if operation is None:
        raise CaseNotFound("No such identity operation.")
    for number in sorted({operation.from_nhs_number, operation.to_nhs_number}):
        patient_lock(nhs_number=number)
    # An opt-out since (on either number: they are one person while it stands) wins:
    # undoing must not bring back a record for someone who opted out.
    if any(
        optout_blocks(nhs_number=n) for n in (operation.from_nhs_number, operation.to_nhs_number)
    ):
        raise WorkbenchRefused(
            "The person has opted out: there is nothing to give back.", code="opted_out",
            status=409,
        )  # fmt: skip
    return identity_operation_undo(operation=operation, actor=actor_for(viewer), context=context)


# ------------------------------------------------------------------ the daily digest


def parked_digests_compose(*, day: datetime.date) -> list[ParkedDigest]:
    """Each organisation's digest of a day: what its feeds parked and why, what was decided.

    One digest per organisation whose feeds parked or had decided anything
    that day, or that still has cases waiting; doing it again for the same
    day rewrites the same rows (idempotent). Counts only, no person.
    """
    start = timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))
    end = start + datetime.timedelta(days=1)
    parked: dict[int, Counter[str]] = {}
    for org, reason, n in (
        MatchQueueItem.objects.filter(created_at__gte=start, created_at__lt=end)
        .values_list("organisation", "reason")
        .annotate(n=Count("id"))
    ):
        parked.setdefault(org, Counter())[reason] += n
    decided: dict[int, Counter[str]] = {}
    for org, state, n in (
        MatchQueueItem.objects.filter(resolved_at__gte=start, resolved_at__lt=end)
        .values_list("organisation", "state")
        .annotate(n=Count("group", distinct=True))
    ):
        decided.setdefault(org, Counter())[state] += n
    cutoff = end - waiting_limit()
    waiting: dict[int, tuple[int, int]] = {}
    open_cases = (
        MatchQueueItem.objects.filter(created_at__lt=end)
        .filter(Q(state=ParkState.PARKED) | Q(resolved_at__gte=end))
        .values("organisation", "group")
        .annotate(first=Min("created_at"))
    )
    for row in open_cases:
        count, late = waiting.get(row["organisation"], (0, 0))
        waiting[row["organisation"]] = (count + 1, late + (row["first"] < cutoff))
    digests = []
    for org in sorted(set(parked) | set(decided) | set(waiting)):
        count, late = waiting.get(org, (0, 0))
        digest, _ = ParkedDigest.objects.update_or_create(
            organisation_id=org, day=day,
            defaults={"parked": dict(parked.get(org, {})), "decided": dict(decided.get(org, {})),
                      "waiting": count, "overdue": late},
        )  # fmt: skip
        digests.append(digest)
    return digests


def parked_digests_for(*, scope: DataQualityScope, limit: int = 14) -> list[ParkedDigest]:
    """The latest daily digests the officer may read: their organisation's, or every one."""
    digests = ParkedDigest.objects.select_related("organisation")
    if scope.organisation_ods is not None:
        digests = digests.filter(organisation__ods_code=scope.organisation_ods)
    return list(digests.order_by("-day", "organisation__name")[:limit])


# ------------------------------------------------------------------ disputed demographics


@dataclass(frozen=True)
class DisputedPerson:
    """A person whose sources disagree about their demographics, and who the sources are."""

    patient: Patient
    labels: tuple[str, ...]
    sources: tuple[str, ...]  # ODS codes of the sources that sent a Patient resource


def _disputed(scope: DataQualityScope) -> QuerySet[Patient]:
    people = Patient.objects.exclude(demographics_disputed=[])
    if scope.organisation_ods is not None:
        people = people.filter(
            Exists(
                Entry.objects.filter(
                    patient=OuterRef("pk"), resource_type="Patient",
                    source_org__ods_code=scope.organisation_ods,
                )
            )
        )  # fmt: skip
    return people


def disputed_people_count(*, scope: DataQualityScope) -> int:
    """How many people in the officer's scope have sources that disagree (front page)."""
    return _disputed(scope).count()


@transaction.atomic
def disputed_people_view(
    *, viewer: User, scope: DataQualityScope, context: AuditContext | None = None,
    limit: int = CASES_SHOWN,
) -> list[DisputedPerson]:  # fmt: skip
    """The people whose sources disagree about their demographics (demographics_disputed).

    The programme's officers see everyone; an organisation's officers the
    people their own feeds sent a Patient for. Each person shown is an
    audited read (one event each, written together before anything returns).
    """
    people = list(_disputed(scope).order_by("nhs_number")[:limit])
    sources: dict[int, set[str]] = {}
    for patient_id, ods in Entry.objects.filter(
        patient__in=people, resource_type="Patient"
    ).values_list("patient_id", "source_org__ods_code"):
        sources.setdefault(patient_id, set()).add(ods)
    actor = actor_for(viewer)
    audit_events_record(
        events=[
            PendingEvent(
                action=AuditAction.MATCH_QUEUE_VIEW, actor=actor,
                subject=AuditSubject(patient_id=p.public_id, nhs_number=p.nhs_number,
                                     gp_ods=p.registered_gp_ods),
                detail={"list": "disputed-demographics", "fields": list(p.demographics_disputed)},
                source_ods=tuple(sorted(sources.get(p.pk, ()))), context=context,
            )
            for p in people
        ]
        # An empty list is a read of the workbench too.
        or [PendingEvent(action=AuditAction.MATCH_QUEUE_VIEW, actor=actor, context=context,
                         detail={"list": "disputed-demographics", "people": 0})]
    )  # fmt: skip
    return [
        DisputedPerson(p, tuple(p.disputed_labels), tuple(sorted(sources.get(p.pk, ()))))
        for p in people
    ]
