"""Reversible identity operations: merge and link people, and undo either exactly.

A merge moves one source's records (HL7 A40: the sender speaks only for its
own) or every source's (the data quality workbench) from one NHS number's
person to another's; a link records that two NHS numbers are one person and
moves nothing. Each is an IdentityOperation holding what the undo needs: the
entries and source keys that moved, both people's rows as they were, and
whether the merge created the survivor or removed the merged person (whose
public id, the audit trail's subject, comes back with it).

While an operation stands, the two numbers are one person to the opt-out
gate (identity_numbers_joined): an opt-out on either wins. A merge or link
where either number is opted out moves nothing and removes the survivor's
record; it cannot be undone into data (the opt-out removed it).

Every function here runs under the caller's transaction; the caller holds
patient_lock for both numbers (in NHS number order) and asked the gate.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditAction
from audit.trail import AuditActor, AuditContext, AuditSubject, audit_event_record
from sharedrecord.demographics import patient_demographics_refresh
from sharedrecord.entries import named_keys, patient_create, patient_purge
from sharedrecord.exceptions import DomainError
from sharedrecord.models import (
    Entry,
    IdentityKind,
    IdentityOperation,
    Organisation,
    Patient,
    RemovedKey,
    SourceKey,
)

# Patient columns an undo puts back as they were (everything but the key).
_PATIENT_FIELDS = [f.attname for f in Patient._meta.concrete_fields if f.attname != "id"]


class IdentityRefused(DomainError):
    """An identity operation that cannot be done or undone; says why by code."""

    def __init__(self, message: str, *, code: str, status: int = 409) -> None:
        super().__init__(message, code=code)
        self.status = status


def _row(patient: Patient) -> dict[str, Any]:
    row: dict[str, Any] = {"id": patient.pk}
    for name in _PATIENT_FIELDS:
        value = getattr(patient, name)
        if isinstance(value, datetime.datetime | datetime.date):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        row[name] = value
    return row


def _values(row: dict[str, Any]) -> dict[str, Any]:
    """A snapshot row as model values (dates and ids parsed back)."""
    values: dict[str, Any] = {}
    for name in _PATIENT_FIELDS:
        value = row[name]
        internal = Patient._meta.get_field(name).get_internal_type()  # type: ignore[union-attr]
        if value is not None and internal == "DateTimeField":
            value = datetime.datetime.fromisoformat(value)
        elif value is not None and internal == "DateField":
            value = datetime.date.fromisoformat(value)
        elif value is not None and internal == "UUIDField":
            value = uuid.UUID(value)
        values[name] = value
    return values


def _entry_rows(entries: Any) -> list[dict[str, Any]]:
    """Whole Entry rows as JSON (the undo inserts them again with the same ids)."""
    names = [f.attname for f in Entry._meta.concrete_fields]
    found = []
    for row in entries.values(*names):
        found.append(
            {
                k: v.isoformat()
                if isinstance(v, datetime.datetime)
                else str(v)
                if isinstance(v, uuid.UUID)
                else v
                for k, v in row.items()
            }
        )
    return found


def _entry_restored(row: dict[str, Any]) -> Entry:
    values = dict(row)
    for name in ("received_at", "updated_at", "source_updated_at", "effective_at"):
        if values.get(name):
            values[name] = datetime.datetime.fromisoformat(values[name])
    for name in ("public_id", "feed_message_id"):
        if values.get(name):
            values[name] = uuid.UUID(values[name])
    return Entry(**values)


def identity_numbers_joined(*, nhs_number: str) -> set[str]:
    """Every NHS number a standing merge or link joins to this one (itself included).

    Followed through chains (A into B, B into C), at most 20 steps: the
    opt-out gate treats them all as one person.
    """
    found = {nhs_number}
    frontier = {nhs_number}
    for _ in range(20):
        rows = IdentityOperation.objects.filter(undone_at__isnull=True).filter(
            Q(from_nhs_number__in=frontier) | Q(to_nhs_number__in=frontier)
        )
        new = {n for pair in rows.values_list("from_nhs_number", "to_nhs_number") for n in pair}
        frontier = new - found
        if not frontier:
            break
        found |= frontier
    return found


def identity_snapshots_clear(*, nhs_numbers: set[str]) -> int:
    """The opt-out's part here: forget what operations on these numbers kept (names, rows).

    The operations themselves stay (they hold only the two NHS numbers), so
    the opt-out goes on blocking both; they can no longer be undone.
    """
    return (
        IdentityOperation.objects.filter(
            Q(from_nhs_number__in=nhs_numbers) | Q(to_nhs_number__in=nhs_numbers)
        )
        .exclude(snapshot={})
        .update(snapshot={})
    )


@dataclass(frozen=True)
class Merged:
    """What a merge did: the operation, the people and how many entries moved."""

    operation: IdentityOperation
    survivor: Patient | None
    merged_id: uuid.UUID | None
    entries: int
    merged_removed: bool


def patients_merge(
    *,
    from_nhs_number: str,
    to_nhs_number: str,
    source_org: Organisation | None,
    blocked: bool,
    actor: AuditActor,
    reason: str = "",
    feed_message_id: uuid.UUID | None = None,
    kind: str = IdentityKind.MERGE,
    retire: tuple[tuple[str, str], ...] = (),
    context: AuditContext | None = None,
) -> Merged:
    """Move the merged person's entries (one source's, or all) to the survivor; record it.

    1. Keep both people's rows as they are now.
    2. `blocked` (an opt-out on either number, asked by the caller under the
       locks): nothing moves, both people's records are removed (the opt-out
       wins for the one person they are).
    3. Otherwise, for a merge, the entries and source keys move (their ids
       kept), the survivor is created if the record had none, and the merged
       person is removed once no source holds anything for them; both
       people's shown demographics are recomputed. A link moves nothing.
       `retire` names resources of `source_org` on the merged person that the
       merge ends (an A40's record of the merged-away person): they are
       removed, kept whole in the operation so the undo puts them back.
    Side effects: one IdentityOperation and one audit event (identity-change).
    """
    prior = Patient.objects.filter(nhs_number=from_nhs_number).first()
    survivor = Patient.objects.filter(nhs_number=to_nhs_number).first()
    snapshot: dict[str, Any] = {
        "patients": {p.nhs_number: _row(p) for p in (prior, survivor) if p is not None},
        "survivor_entries": (
            sorted(Entry.objects.filter(patient=survivor).values_list("id", flat=True))
            if survivor is not None
            else []
        ),
        "entries": [],
        "source_keys": [],
        "created_survivor": False,
        "removed_prior": False,
        "retired": [],
        "retired_keys": [],
    }
    moved = 0
    merged_id = prior.public_id if prior is not None else None
    if blocked:
        for number in (from_nhs_number, to_nhs_number):
            patient_purge(nhs_number=number)
        survivor = None
    elif kind == IdentityKind.MERGE and prior is not None:
        if retire and source_org is not None:
            ending = named_keys(retire)
            retired = Entry.objects.filter(ending, patient=prior, source_org=source_org)
            retired_keys = SourceKey.objects.filter(ending, patient=prior, source_org=source_org)
            snapshot["retired"] = _entry_rows(retired)
            snapshot["retired_keys"] = list(
                retired_keys.values("id", "source_org_id", "resource_type", "source_id")
            )
            retired.delete()
            retired_keys.delete()
        entries = Entry.objects.filter(patient=prior)
        keys = SourceKey.objects.filter(patient=prior)
        if source_org is not None:
            entries, keys = (
                entries.filter(source_org=source_org),
                keys.filter(source_org=source_org),
            )
        snapshot["entries"] = sorted(entries.values_list("id", flat=True))
        snapshot["source_keys"] = sorted(keys.values_list("id", flat=True))
        # What the merged person's sources withdrew goes with what moves (H-033): every
        # source's when the merge empties the person (deleting them would delete it).
        emptied = (
            not Entry.objects.filter(patient=prior).exclude(pk__in=snapshot["entries"]).exists()
        )
        removals = RemovedKey.objects.filter(patient=prior)
        if source_org is not None and not emptied:
            removals = removals.filter(source_org=source_org)
        snapshot["removed_keys"] = sorted(removals.values_list("id", flat=True))
        if survivor is None:
            survivor = patient_create(nhs_number=to_nhs_number)
            snapshot["created_survivor"] = True
        moved = Entry.objects.filter(pk__in=snapshot["entries"]).update(patient=survivor)
        SourceKey.objects.filter(pk__in=snapshot["source_keys"]).update(patient=survivor)
        RemovedKey.objects.filter(pk__in=snapshot["removed_keys"]).update(patient=survivor)
        if emptied:
            prior.delete()
            snapshot["removed_prior"] = True
        else:
            patient_demographics_refresh(patient=prior, asserted_by=actor)
        patient_demographics_refresh(patient=survivor, asserted_by=actor)
    operation = IdentityOperation.objects.create(
        kind=kind, from_nhs_number=from_nhs_number, to_nhs_number=to_nhs_number,
        source_org=source_org, feed_message_id=feed_message_id, actor=actor.name[:150],
        reason=reason[:500], blocked=blocked, snapshot=snapshot,
    )  # fmt: skip
    audit_event_record(
        action=AuditAction.IDENTITY_CHANGE,
        actor=actor,
        subject=AuditSubject(
            patient_id=survivor.public_id if survivor else None,
            nhs_number=to_nhs_number,
            gp_ods=survivor.registered_gp_ods if survivor else "",
        ),
        detail={
            "operation": str(operation.public_id),
            "change": kind,
            "from_patient": str(merged_id) if merged_id else None,
            "from_nhs_number": from_nhs_number,
            "entries": moved,
            "blocked": blocked,
            "source": source_org.ods_code if source_org else None,
        },
        source_ods=[source_org.ods_code] if source_org else [],
        context=context,
    )
    return Merged(operation, survivor, merged_id, moved, bool(snapshot["removed_prior"]))


@transaction.atomic
def identity_operation_undo(
    *, operation: IdentityOperation, actor: AuditActor, context: AuditContext | None = None
) -> IdentityOperation:
    """Undo a standing merge or link exactly: unmerge, or unlink.

    The caller holds patient_lock for both numbers. The merged person comes
    back with the same row (its public id, so the audit trail's subject is
    the same person again), the moved entries and source keys go back, the
    survivor is removed if the merge created it and it holds nothing else,
    and both people's rows are put back as they were when nothing else
    changed the survivor's entries meanwhile (otherwise their demographics
    are recomputed). A blocked operation (an opt-out removed the records)
    has nothing to give back: it is refused.
    Side effects: the operation marked undone, one audit event.
    """
    locked = IdentityOperation.objects.select_for_update().get(pk=operation.pk)
    if locked.undone_at is not None:
        raise IdentityRefused("This operation has already been undone.", code="already_undone")
    if locked.blocked:
        raise IdentityRefused(
            "An opt-out removed these records: there is nothing to give back.", code="opted_out"
        )
    snapshot = locked.snapshot
    if not snapshot:
        raise IdentityRefused(
            "An opt-out cleared what this operation kept: it cannot be undone.", code="opted_out"
        )
    rows = snapshot.get("patients", {})
    prior_row = rows.get(locked.from_nhs_number)
    survivor = Patient.objects.filter(nhs_number=locked.to_nhs_number).first()
    prior = Patient.objects.filter(nhs_number=locked.from_nhs_number).first()
    if locked.kind == IdentityKind.MERGE:
        if prior is None and prior_row is not None:
            prior = Patient(id=prior_row["id"], **_values(prior_row))
            prior.save(force_insert=True)
            Patient.objects.filter(pk=prior.pk).update(**_values(prior_row))
        if prior is not None:
            Entry.objects.filter(pk__in=snapshot["entries"]).update(patient=prior)
            SourceKey.objects.filter(pk__in=snapshot["source_keys"]).update(patient=prior)
            removed = snapshot.get("removed_keys", [])  # none before removals were kept
            RemovedKey.objects.filter(pk__in=removed).update(patient=prior)
            for key in snapshot.get("retired_keys", []):
                SourceKey.objects.get_or_create(
                    source_org_id=key["source_org_id"], resource_type=key["resource_type"],
                    source_id=key["source_id"], defaults={"id": key["id"], "patient": prior},
                )  # fmt: skip
            for row in snapshot.get("retired", []):
                if not Entry.objects.filter(pk=row["id"]).exists():
                    _entry_restored(row).save(force_insert=True)
        unchanged = survivor is not None and sorted(
            Entry.objects.filter(patient=survivor).values_list("id", flat=True)
        ) == snapshot.get("survivor_entries", [])
        if (
            survivor is not None
            and snapshot.get("created_survivor")
            and not Entry.objects.filter(patient=survivor).exists()
        ):
            if prior is not None:  # removals sent for the one person since, kept with them
                RemovedKey.objects.filter(patient=survivor).update(patient=prior)
            survivor.delete()
            survivor = None
        for person in (prior, survivor):
            if person is None:
                continue
            row = rows.get(person.nhs_number)
            if row is not None and (person is prior or unchanged):
                Patient.objects.filter(pk=person.pk).update(**_values(row))
            else:
                patient_demographics_refresh(patient=person, asserted_by=actor)
    locked.undone_at = timezone.now()
    locked.undone_by = actor.name[:150]
    locked.save(update_fields=["undone_at", "undone_by"])
    audit_event_record(
        action=AuditAction.IDENTITY_CHANGE,
        actor=actor,
        subject=AuditSubject(
            patient_id=prior.public_id if prior else None, nhs_number=locked.from_nhs_number
        ),
        detail={
            "operation": str(locked.public_id),
            "change": "unmerge" if locked.kind == IdentityKind.MERGE else "unlink",
            "to_nhs_number": locked.to_nhs_number,
            "entries": len(snapshot.get("entries", [])),
        },
        source_ods=[locked.source_org.ods_code] if locked.source_org else [],
        context=context,
    )
    return locked
