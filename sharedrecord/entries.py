"""The write path of the combined record: one person's entries from each source.

Every write of Entry rows, and the creation, purge and merge of Patient rows,
under the person's lock (patient_lock): the upsert, a source's removal of one
resource, the purge when a person opts out, and the merge of two people (HL7
A40). A person's shown demographics are recomputed by sharedrecord.demographics.
"""

from __future__ import annotations

import datetime
import enum
import uuid
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from sharedrecord.demographics import patient_demographics_refresh
from sharedrecord.entrydata import EntryData
from sharedrecord.models import (
    Entry,
    Organisation,
    Patient,
    SourceKey,
)


class UpsertResult(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    STALE = "stale"


def patient_lock(*, nhs_number: str) -> None:
    """Serialise every write for one person (ingestion, opt-out, purge) until commit.

    A transaction-scoped advisory lock keyed on the NHS number: the opt-out
    takes the same lock, so whichever commits first, the other sees it.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [PATIENT_LOCK_NAMESPACE, nhs_number]
        )


PATIENT_LOCK_NAMESPACE = 7401


def patient_create(*, nhs_number: str) -> Patient:
    """Create the person for a valid NHS number (the caller holds patient_lock)."""
    patient = Patient(nhs_number=nhs_number)
    patient.full_clean()
    patient.save()
    return patient


def _newer(incoming: EntryData, existing: Entry) -> bool | None:
    """True if newer, False if older, None if the versions cannot tell.

    The source's numeric meta.versionId decides first, then meta.lastUpdated
    (for HL7 v2, the message's event or MSH-7 time). Arrival order never does:
    retries and crashed workers deliver a source's messages in any order.
    """
    mine, theirs = incoming.version_id, existing.version_id
    if mine.isdigit() and theirs.isdigit() and int(mine) != int(theirs):
        return int(mine) > int(theirs)
    new_time, old_time = incoming.source_updated_at, existing.source_updated_at
    if new_time and old_time and new_time != old_time:
        return new_time > old_time
    return None


ENTRY_FIELDS = (
    "section", "source_system", "version_id", "source_updated_at", "effective_at", "status",
    "code_system", "code", "code_display", "sensitivity", "codes", "resource", "content_hash",
    "updated_at", "feed_message_id",
)  # fmt: skip


def _fill(entry: Entry, data: EntryData, *, source_system: str, now: datetime.datetime,
          feed_message_id: uuid.UUID | None) -> None:  # fmt: skip
    entry.section = data.section
    entry.source_system = source_system
    entry.version_id = data.version_id
    entry.source_updated_at = data.source_updated_at
    entry.effective_at = data.effective_at
    entry.status = data.status
    entry.code_system, entry.code, entry.code_display = (
        data.code_system,
        data.code,
        data.code_display,
    )
    entry.sensitivity = list(data.sensitivity)
    entry.codes = list(data.codes)
    entry.resource = data.resource
    entry.content_hash = data.content_hash
    entry.updated_at = now
    entry.feed_message_id = feed_message_id


def entries_upsert(
    *,
    patient: Patient,
    source_org: Organisation,
    source_system: str,
    items: list[EntryData],
    feed_message_id: uuid.UUID | None,
) -> list[UpsertResult]:
    """Store one source's resources for one person; repeating it changes nothing.

    Keyed by (source organisation, resource type, source id). A newer version
    replaces the stored one, the same content is unchanged, an older version
    is ignored (STALE), whatever order the messages arrive in. A resource the
    source now files under another person moves, unless what that person
    holds is newer (then the incoming one is STALE and nothing moves). The same
    content at a newer version keeps the newer version's stamps, so an older
    change arriving after it is still recognised as older. When a key repeats
    in `items`, the last one wins and the earlier ones count as unchanged. The
    caller holds patient_lock and has asked the opt-out gate. Returns one
    result per item, in order.

    Steps (a fixed handful of statements, however many items):
    1. Create the missing keys (ON CONFLICT DO NOTHING: a concurrent insert of
       the same key is waited for, not an error).
    2. Lock this source's keys for these ids. For those that name another
       person, lock that person's entries: move the key (deleting the other
       entry) only where the incoming version is not older.
    3. Lock the existing entries; decide created / updated / unchanged / stale.
    4. bulk_create the new entries, bulk_update the changed ones (and the
       version stamps of unchanged content sent at a newer version).
    """
    now = timezone.now()
    latest = {(item.resource_type, item.source_id): i for i, item in enumerate(items)}
    results = [UpsertResult.UNCHANGED] * len(items)
    source_ids = {source_id for _, source_id in latest}
    # Claim the keys first: a concurrent message from the same source naming the
    # same resource waits here for the other transaction, then sees its row.
    SourceKey.objects.bulk_create(
        (
            SourceKey(source_org=source_org, resource_type=t, source_id=s, patient=patient)
            for (t, s) in latest
        ),
        ignore_conflicts=True,
    )
    keys = {
        (row.resource_type, row.source_id): row
        for row in SourceKey.objects.select_for_update().filter(
            source_org=source_org, source_id__in=source_ids
        )
        if (row.resource_type, row.source_id) in latest
    }
    elsewhere = {wanted: row for wanted, row in keys.items() if row.patient_id != patient.pk}
    stale: set[tuple[str, str]] = set()
    if elsewhere:
        # What the other person holds: an older version must not take it from them.
        held: dict[tuple[str, str], Entry] = {}
        for other in Entry.objects.select_for_update().filter(
            source_org=source_org,
            patient_id__in={row.patient_id for row in elsewhere.values()},
            source_id__in={source_id for _, source_id in elsewhere},
        ):
            wanted = (other.resource_type, other.source_id)
            if wanted in elsewhere and elsewhere[wanted].patient_id == other.patient_id:
                held[wanted] = other
        stale = {w for w, other in held.items() if _newer(items[latest[w]], other) is False}
        moving = {w: row for w, row in elsewhere.items() if w not in stale}
        gone = [held[w].pk for w in moving if w in held]
        if gone:
            Entry.objects.filter(pk__in=gone).delete()
        if moving:
            SourceKey.objects.filter(pk__in=[row.pk for row in moving.values()]).update(
                patient=patient
            )
    existing = {
        (entry.resource_type, entry.source_id): entry
        for entry in Entry.objects.select_for_update().filter(
            patient=patient, source_org=source_org, source_id__in=source_ids
        )
    }
    to_create: list[Entry] = []
    to_update: list[Entry] = []
    to_stamp: list[Entry] = []
    for wanted, i in latest.items():
        data, entry = items[i], existing.get(wanted)
        if wanted in stale:
            results[i] = UpsertResult.STALE
            continue
        if entry is not None and entry.content_hash == data.content_hash:
            if _newer(data, entry):
                entry.version_id, entry.source_updated_at = data.version_id, data.source_updated_at
                entry.resource = data.resource
                to_stamp.append(entry)
            continue
        if entry is not None and _newer(data, entry) is False:
            results[i] = UpsertResult.STALE
            continue
        if entry is None:
            entry = Entry(
                patient=patient,
                source_org=source_org,
                resource_type=data.resource_type,
                source_id=data.source_id,
                received_at=now,
            )
            to_create.append(entry)
            results[i] = UpsertResult.CREATED
        else:
            to_update.append(entry)
            results[i] = UpsertResult.UPDATED
        _fill(entry, data, source_system=source_system, now=now, feed_message_id=feed_message_id)
    Entry.objects.bulk_create(to_create)
    if to_update:
        Entry.objects.bulk_update(to_update, fields=ENTRY_FIELDS)
    if to_stamp:
        Entry.objects.bulk_update(to_stamp, fields=["version_id", "source_updated_at", "resource"])
    return results


def entry_remove(
    *,
    source_org: Organisation,
    resource_type: str,
    source_id: str,
    version_id: str = "",
    as_of: datetime.datetime | None = None,
) -> Patient | None:
    """Remove a source's resource from the record (DELETE or entered-in-error).

    `version_id` and `as_of` say which version of the resource the removal
    comes from (what the source sent with it, or its message's time): a
    stored version newer than that is kept, as an older update would be.
    Returns the person it belonged to, or None if the record never held it
    (or holds a newer version).
    """
    key = (
        SourceKey.objects.select_for_update()
        .select_related("patient")
        .filter(source_org=source_org, resource_type=resource_type, source_id=source_id)
        .first()
    )
    if key is None:
        return None
    stored = Entry.objects.filter(
        patient=key.patient, source_org=source_org, resource_type=resource_type, source_id=source_id
    )
    removal = EntryData(
        resource_type=resource_type, source_id=source_id, section="", resource={},
        content_hash="", version_id=version_id, source_updated_at=as_of,
    )  # fmt: skip
    if (version_id or as_of) and any(_newer(removal, e) is False for e in stored):
        return None
    deleted, _ = stored.delete()
    patient = key.patient
    key.delete()
    return patient if deleted else None


@dataclass(frozen=True)
class PurgeResult:
    patient_id: uuid.UUID | None
    counts: dict[str, int]
    source_ods: tuple[str, ...]  # who had sent data: they re-send if the person opts back in


def patient_purge(*, nhs_number: str) -> PurgeResult:
    """Remove everything the record holds for a person: the patient, entries, source keys.

    The caller holds patient_lock (the opt-out does). Audit events are kept:
    they are the governance record and hold no clinical content.
    """
    patient = Patient.objects.filter(nhs_number=nhs_number).first()
    if patient is None:
        return PurgeResult(None, {"entries": 0, "source_keys": 0, "patients": 0}, ())
    entries = Entry.objects.filter(patient=patient)
    sources = tuple(sorted(set(entries.values_list("source_org__ods_code", flat=True).distinct())))
    counts = {
        "entries": entries.count(),
        "source_keys": SourceKey.objects.filter(patient=patient).count(),
        "patients": 1,
    }
    public_id = patient.public_id
    patient.delete()  # entries and source keys go with it (CASCADE)
    return PurgeResult(public_id, counts, sources)


@dataclass(frozen=True)
class MergeResult:
    survivor_id: uuid.UUID | None
    merged_id: uuid.UUID | None
    entries: int
    merged_removed: bool


def patient_entries_merge(
    *, source_org: Organisation, from_nhs_number: str, to_nhs_number: str, blocked: bool
) -> MergeResult:
    """Move one source's entries from a merged-away person to the surviving person (HL7 A40).

    The caller holds patient_lock for both numbers. Only `source_org`'s
    entries move; the merged person stays while other sources hold entries for
    them, and is removed when nothing is left. `blocked` (the survivor opted
    out): the entries are removed instead of moved.
    """
    prior = Patient.objects.filter(nhs_number=from_nhs_number).first()
    if prior is None:
        survivor = Patient.objects.filter(nhs_number=to_nhs_number).first()
        return MergeResult(survivor.public_id if survivor else None, None, 0, False)
    entries = Entry.objects.filter(patient=prior, source_org=source_org)
    keys = SourceKey.objects.filter(patient=prior, source_org=source_org)
    survivor = None
    if blocked:
        count = entries.count()
        entries.delete()
        keys.delete()
    else:
        survivor = Patient.objects.filter(nhs_number=to_nhs_number).first() or patient_create(
            nhs_number=to_nhs_number
        )
        count = entries.update(patient=survivor)
        keys.update(patient=survivor)
    merged_id = prior.public_id
    removed = not Entry.objects.filter(patient=prior).exists()
    if removed:
        prior.delete()
    else:
        patient_demographics_refresh(patient=prior)
    if survivor is not None:
        patient_demographics_refresh(patient=survivor)
    return MergeResult(survivor.public_id if survivor else None, merged_id, count, removed)
