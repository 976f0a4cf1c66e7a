"""Applying a parsed message: group entries by person, gate, match, store or park; A40 merges."""

from __future__ import annotations

import datetime
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings

from audit.models import AuditAction, AuditOutcome
from audit.trail import (
    AuditActor,
    AuditSubject,
    PendingEvent,
    audit_event_record,
    audit_events_record,
)
from ingestion.credentials import INGESTION
from ingestion.fhir.fields import birth_date_of
from ingestion.fhir.results import ParsedBundle, ParsedEntry
from ingestion.hl7v2.results import Merge
from ingestion.models import FeedMessage, MatchQueueItem, ParkReason
from ingestion.parked import entry_data_columns
from ingestion.progress import Outcome, Progress
from optout.models import OptOutRoute
from optout.selectors import optout_blocks
from optout.services import optout_holding_move, optout_register
from sharedrecord.access import may_assert_registration, may_record_dissent, registered_gp_named
from sharedrecord.demographics import patient_demographics_refresh
from sharedrecord.entries import (
    UpsertResult,
    entries_upsert,
    entry_is_older,
    entry_remove,
    patient_create,
    patient_lock,
)
from sharedrecord.exceptions import PermissionDenied
from sharedrecord.identity import patients_merge
from sharedrecord.matching import (
    Demographics,
    MatchOutcome,
    nhs_number_is_valid,
    nhs_number_normalise,
    patient_match,
)
from sharedrecord.models import Entry, Organisation, OrganisationKind, SourceKey


@dataclass
class _Person:
    """The entries of one bundle that belong to one person."""

    nhs_number: str = ""
    park_reason: str = ""
    birth_date: datetime.date | None = None
    # The source's Patient id the entries named, when the source never sent that Patient.
    reference: str = ""
    # The NHS number as sent, even when invalid: the reviewer sees what came.
    sent: str = ""
    entries: list[ParsedEntry] = field(default_factory=list)


def _group(
    bundle: ParsedBundle, organisation: Organisation
) -> tuple[dict[str, _Person], list[ParsedEntry]]:
    """Group entries by the person they belong to; return the groups and the deletes."""
    by_index = {e.index: e for e in bundle.entries}
    groups: dict[str, _Person] = defaultdict(_Person)
    deletes: list[ParsedEntry] = []
    source_keys: dict[str, SourceKey | None] = {}
    for entry in bundle.entries:
        if entry.deleted:
            deletes.append(entry)
            continue
        link = entry.patient
        assert link is not None  # the parser resolved or rejected every entry
        if link.kind == "bundle" and f"bundle:{link.value}" in groups:
            person = groups[f"bundle:{link.value}"]  # its Patient was read for an earlier entry
        elif link.kind == "bundle":
            patient_entry = by_index[int(link.value)]
            numbers = [n for n in patient_entry.nhs_numbers if n]
            key = f"bundle:{patient_entry.index}"
            person = groups[key]
            person.sent = numbers[0][:32] if numbers else ""
            if len(set(numbers)) > 1:
                person.park_reason = ParkReason.CONFLICTING_NHS_NUMBERS
            elif not numbers:
                person.park_reason = ParkReason.NO_NHS_NUMBER
            elif not nhs_number_is_valid(numbers[0]):
                person.park_reason = ParkReason.INVALID_NHS_NUMBER
            else:
                person.nhs_number = nhs_number_normalise(numbers[0])
            birth = birth_date_of(patient_entry.resource)
            if birth is not None:
                person.birth_date = birth
        elif link.kind == "source-id":
            if link.value not in source_keys:  # one look-up per Patient named, not per entry
                source_keys[link.value] = (
                    SourceKey.objects.filter(
                        source_org=organisation, resource_type="Patient", source_id=link.value
                    )
                    .select_related("patient")
                    .first()
                )
            key_row = source_keys[link.value]
            if key_row is None:
                person = groups[f"unknown:{link.value}"]
                person.park_reason = ParkReason.UNKNOWN_PATIENT
                person.reference = link.value[:64]
            else:
                person = groups[f"nhs:{key_row.patient.nhs_number}"]
                person.nhs_number = key_row.patient.nhs_number
        else:
            number = nhs_number_normalise(link.value)
            person = groups[f"nhs:{number}"]
            person.sent = number[:32]
            if nhs_number_is_valid(number):
                person.nhs_number = number
            else:
                person.park_reason = ParkReason.INVALID_NHS_NUMBER
        person.entries.append(entry)
    # Two groups for one NHS number (a Patient entry and a logical reference) are one person.
    merged: dict[str, _Person] = {}
    for key, person in groups.items():
        target = f"nhs:{person.nhs_number}" if person.nhs_number and not person.park_reason else key
        if target in merged:
            merged[target].entries.extend(person.entries)
            merged[target].birth_date = merged[target].birth_date or person.birth_date
        else:
            merged[target] = person
    return merged, deletes


def _park(
    message: FeedMessage,
    person: _Person,
    reason: str,
    outcome: Outcome,
    events: list[PendingEvent],
) -> None:
    group = uuid.uuid4()  # the person's entries are decided together (ingestion/workbench.py)
    for entry in person.entries:
        MatchQueueItem.objects.create(
            message=message,
            organisation=message.organisation,
            group=group,
            entry_index=entry.index,
            resource_type=entry.resource_type,
            source_id=entry.source_id,
            reason=reason,
            nhs_number_sent=person.nhs_number or person.sent,
            patient_reference=person.reference,
            resource=entry.resource,
            entry_data=entry_data_columns(entry.data),
        )
        outcome.counts["parked"] += 1
    outcome.issues.append(
        {
            "entry": min(e.index for e in person.entries),
            "severity": "warning",
            "code": f"parked-{reason}",
            "diagnostics": (
                f"{len(person.entries)} entries parked for review: {ParkReason(reason).label}."
            ),
            "expression": [],
        }
    )
    events.append(_match_not_stored(message, "parked", reason, len(person.entries)))


def _match_not_stored(
    message: FeedMessage, decision: str, reason: str, entries: int
) -> PendingEvent:
    """The audit event of a person's entries that were parked or rejected, not stored."""
    return PendingEvent(
        action=AuditAction.MATCH_DECISION,
        actor=AuditActor.system(INGESTION, org_ods=message.organisation.ods_code),
        outcome=AuditOutcome.REJECTED,
        detail={
            "message": str(message.public_id),
            "decision": decision,
            "reason": reason,
            "entries": entries,
        },
        source_ods=(message.organisation.ods_code,),
    )


def _reject_conflicting(
    message: FeedMessage, person: _Person, outcome: Outcome, events: list[PendingEvent]
) -> None:
    """A Patient carrying two different NHS numbers: the source must correct it."""
    first = min(e.index for e in person.entries)
    outcome.issues.append(
        {
            "entry": first,
            "severity": "error",
            "code": "conflicting-nhs-numbers",
            "diagnostics": (
                f"The Patient carries different NHS numbers; its {len(person.entries)} "
                "entries were not stored. Send one NHS number."
            ),
            "expression": ["Patient.identifier"],
        }
    )
    outcome.counts["rejected"] += len(person.entries)
    events.append(
        _match_not_stored(message, "rejected", "conflicting-nhs-numbers", len(person.entries))
    )


def _dissent_coded(person: _Person) -> bool:
    codes = set(settings.OPTOUT_FEED_CODES)
    return bool(codes) and any(
        f"{e.data.code_system}|{e.data.code}" in codes for e in person.entries
    )


def _register_dissent(message: FeedMessage, person: _Person, outcome: Outcome) -> None:
    """A GP practice's feed carrying a dissent code records an opt-out for that practice.

    Only a GP practice's own feed counts; the opt-out then removes any record
    and the gate blocks this message's entries for the person.
    """
    organisation = message.organisation
    if not may_record_dissent(organisation) or not _dissent_coded(person):
        return
    try:
        optout_register(
            nhs_number=person.nhs_number,
            practice=organisation,
            route=OptOutRoute.FEED_CODE,
            recorded_by_system=message.credential.system,
        )
    except PermissionDenied:
        outcome.issues.append(
            {
                "entry": min(e.index for e in person.entries),
                "severity": "warning",
                "code": "dissent-not-recorded",
                "diagnostics": "A dissent code was sent for someone registered with another "
                "practice; their practice must record the opt-out.",
                "expression": [],
            }
        )


def _move_optout_holding(organisation: Organisation, person: _Person) -> None:
    """The registration authority moved an opted-out person: their opt-out follows them.

    Nothing is stored for the person (the opt-out stands); only the holding
    of their opt-out moves to the practice the authority names, which may
    then record an opt-in. The caller holds the person's lock.
    """
    if not may_assert_registration(organisation):
        return
    named = {
        registered_gp_named(entry.resource)
        for entry in person.entries
        if entry.resource_type == "Patient"
    } - {""}
    if len(named) != 1:
        return
    practice = Organisation.objects.filter(
        ods_code=named.pop(), kind=OrganisationKind.GP_PRACTICE
    ).first()
    if practice is not None:
        times = [e.data.source_updated_at for e in person.entries if e.resource_type == "Patient"]
        optout_holding_move(
            nhs_number=person.nhs_number,
            to_practice=practice,
            asserted_by=organisation,
            asserted_at=max((t for t in times if t is not None), default=None),
        )


def _move_corrected(
    message: FeedMessage,
    organisation: Organisation,
    person: _Person,
    kept: list[ParsedEntry],
    actor: AuditActor,
) -> None:
    """A source that corrects a person's NHS number moves its entries to the corrected one.

    Its Patient (same source id) filed under another NHS number and not newer
    than this one: every entry of this source on that person moves with it,
    as a recorded identity operation (sharedrecord.identity) that can be
    undone exactly. Other sources' entries stay: this source speaks for its
    own. The caller holds this person's lock; the other is taken here.
    """
    for entry in kept:
        if entry.resource_type != "Patient":
            continue
        key = (
            SourceKey.objects.filter(
                source_org=organisation, resource_type="Patient", source_id=entry.source_id
            )
            .select_related("patient")
            .first()
        )
        if key is None or key.patient.nhs_number == person.nhs_number:
            continue
        earlier = key.patient
        stored = Entry.objects.filter(
            patient=earlier, source_org=organisation, resource_type="Patient",
            source_id=entry.source_id,
        ).first()  # fmt: skip
        if stored is not None and entry_is_older(entry.data, stored):
            continue  # an older message still naming the old number moves nothing
        patient_lock(nhs_number=earlier.nhs_number)
        blocked = optout_blocks(nhs_number=earlier.nhs_number)
        moved = patients_merge(
            from_nhs_number=earlier.nhs_number, to_nhs_number=person.nhs_number,
            source_org=organisation, blocked=blocked, actor=actor,
            reason="The source corrected the person's NHS number.",
            feed_message_id=message.public_id,
        )  # fmt: skip
        audit_event_record(
            action=AuditAction.MATCH_DECISION,
            actor=actor,
            subject=AuditSubject(
                patient_id=moved.survivor.public_id if moved.survivor else None,
                nhs_number=person.nhs_number,
            ),
            detail={
                "message": str(message.public_id),
                "decision": "nhs-number-corrected",
                "operation": str(moved.operation.public_id),
                "merged_from": str(moved.merged_id) if moved.merged_id else None,
                "entries": moved.entries,
            },
            source_ods=[organisation.ods_code],
        )


def bundle_apply(
    *,
    message: FeedMessage,
    bundle: ParsedBundle,
    organisation: Organisation,
    progress: Progress,
    as_of: datetime.datetime | None = None,
    audit_events: list[PendingEvent] | None = None,
) -> Outcome:
    """Store each person's entries; `as_of` (HL7 v2's MSH-7) orders removals with no version.

    Per person, in NHS number order: reject or park what cannot be matched, take
    the person's lock, record a feed's dissent code, ask the opt-out gate, match
    or create, remove and upsert; then apply the bundle's deletes. The caller
    holds the transaction. Side effects: entries, patients, parked items and
    their audit events (one per person: matched, created, parked or rejected),
    written together in one statement before this returns, or, when the caller
    passes `audit_events`, appended to it for the caller to write in the same
    transaction (with its own events, in one statement).
    """
    events: list[PendingEvent] = [] if audit_events is None else audit_events
    outcome = Outcome()
    for issue in bundle.issues:
        outcome.issue(issue)
    groups, deletes = _group(bundle, organisation)
    system_actor = AuditActor.system(INGESTION, org_ods=organisation.ods_code)
    for _, person in sorted(groups.items(), key=lambda item: item[1].nhs_number or item[0]):
        progress.at("match", person.entries)
        if person.park_reason == ParkReason.CONFLICTING_NHS_NUMBERS:
            _reject_conflicting(message, person, outcome, events)
            continue
        if person.park_reason:
            _park(message, person, person.park_reason, outcome, events)
            continue
        progress.at("gate", person.entries)
        patient_lock(nhs_number=person.nhs_number)
        _register_dissent(message, person, outcome)
        if optout_blocks(nhs_number=person.nhs_number):
            _move_optout_holding(organisation, person)
            outcome.counts["blocked"] += len(person.entries)
            continue
        progress.at("match", person.entries)
        match = patient_match(
            demographics=Demographics(nhs_number=person.nhs_number, birth_date=person.birth_date)
        )
        if match.outcome == MatchOutcome.AMBIGUOUS:
            _park(message, person, ParkReason.DEMOGRAPHICS_CONFLICT, outcome, events)
            continue
        patient = match.patient if match.outcome == MatchOutcome.MATCHED else None
        if patient is None:
            patient = patient_create(nhs_number=person.nhs_number)
        events.append(
            PendingEvent(
                action=AuditAction.MATCH_DECISION,
                actor=system_actor,
                subject=AuditSubject(
                    patient_id=patient.public_id,
                    nhs_number=patient.nhs_number,
                    gp_ods=patient.registered_gp_ods,
                ),
                detail={
                    "message": str(message.public_id),
                    "decision": "matched" if match.patient else "created",
                },
                source_ods=(organisation.ods_code,),
            )
        )
        kept: list[ParsedEntry] = []
        # A source withdrawing its Patient may end its claim to the registration.
        demographics_changed_by_removal = False
        for entry in person.entries:
            if entry.data.status == "entered-in-error":
                progress.at("remove", [entry])
                removed = entry_remove(
                    source_org=organisation,
                    resource_type=entry.resource_type,
                    source_id=entry.source_id,
                    version_id=entry.data.version_id,
                    source_updated_at=entry.data.source_updated_at,
                    message_time=as_of,
                    entered_in_error_for=patient,
                )
                outcome.counts["deleted" if removed else "unchanged"] += 1
                demographics_changed_by_removal |= (
                    bool(removed) and entry.resource_type == "Patient"
                )
            else:
                kept.append(entry)
        _move_corrected(message, organisation, person, kept, system_actor)
        progress.at("upsert", kept)
        results = entries_upsert(
            patient=patient,
            source_org=organisation,
            source_system=message.credential.system,
            items=[entry.data for entry in kept],
            feed_message_id=message.public_id,
        )
        demographics_changed = demographics_changed_by_removal
        for entry, result in zip(kept, results, strict=True):
            outcome.counts[str(result) if result != UpsertResult.STALE else "unchanged"] += 1
            demographics_changed |= entry.resource_type == "Patient" and result in (
                UpsertResult.CREATED,
                UpsertResult.UPDATED,
            )
        if demographics_changed:
            progress.at("upsert", [e for e in kept if e.resource_type == "Patient"])
            patient_demographics_refresh(patient=patient, asserted_by=system_actor)
    for entry in deletes:
        progress.at("remove", [entry])
        removed = entry_remove(
            source_org=organisation,
            resource_type=entry.resource_type,
            source_id=entry.source_id,
            message_time=as_of,
        )
        outcome.counts["deleted" if removed else "unchanged"] += 1
        if removed is not None and entry.resource_type == "Patient":
            # The registration and shown demographics may have hung off it.
            patient_lock(nhs_number=removed.nhs_number)
            patient_demographics_refresh(patient=removed, asserted_by=system_actor)
    if audit_events is None:
        audit_events_record(events=events)
    return outcome


def merge_apply(
    *,
    message: FeedMessage,
    organisation: Organisation,
    merge: Merge,
    outcome: Outcome,
    as_of: datetime.datetime | None,
) -> None:
    """A40: move this sender's entries from the merged-away person to the surviving one.

    Only the sender's own entries move: it speaks for its records, not for
    other organisations'. Both people are locked in NHS number order. The
    merge is a recorded identity operation (sharedrecord.identity) that can
    be undone exactly; an opt-out on either number wins (nothing moves and
    both records are removed).
    """
    survivor_number = merge.survivor_nhs_number
    actor = AuditActor.system(INGESTION, org_ods=organisation.ods_code)
    survivor_id = merge.survivor_patient_id
    prior_id = merge.prior_patient_id
    # The sender's record of the merged-away person ends: within a merge it is kept in
    # the recorded operation (undone with it); without one it is simply removed.
    retire = (("Patient", prior_id),) if prior_id and prior_id != survivor_id else ()
    mergeable = (
        merge.prior_nhs_number
        and nhs_number_is_valid(survivor_number)
        and merge.prior_nhs_number != survivor_number
    )
    if not mergeable:
        if retire and entry_remove(
            source_org=organisation,
            resource_type="Patient",
            source_id=prior_id,
            message_time=as_of,
        ):
            outcome.counts["deleted"] += 1
        return
    for number in sorted({merge.prior_nhs_number, survivor_number}):
        patient_lock(nhs_number=number)
    # One person now: an opt-out on either number wins (nothing moves, both records go).
    blocked = optout_blocks(nhs_number=merge.prior_nhs_number) or optout_blocks(
        nhs_number=survivor_number
    )
    moved = patients_merge(
        from_nhs_number=merge.prior_nhs_number, to_nhs_number=survivor_number,
        source_org=organisation, blocked=blocked, actor=actor,
        feed_message_id=message.public_id, retire=retire,
    )  # fmt: skip
    outcome.counts["merged"] += moved.entries
    outcome.counts["deleted"] += len(moved.operation.snapshot.get("retired", []))
    audit_event_record(
        action=AuditAction.MATCH_DECISION,
        actor=actor,
        subject=AuditSubject(
            patient_id=moved.survivor.public_id if moved.survivor else None,
            nhs_number=survivor_number,
        ),
        detail={
            "message": str(message.public_id),
            "decision": "merged",
            "operation": str(moved.operation.public_id),
            "merged_from": str(moved.merged_id) if moved.merged_id else None,
            "merged_nhs_number": merge.prior_nhs_number,
            "entries": moved.entries,
            "merged_person_removed": moved.merged_removed,
            "blocked": blocked,
        },
        source_ods=[organisation.ods_code],
    )
