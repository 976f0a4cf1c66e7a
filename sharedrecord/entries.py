"""The write path of the combined record: one person's entries from each source.

Every write of Entry rows, and the creation, purge and merge of Patient rows,
under the person's lock (patient_lock): the upsert, a source's removal of one
resource and the purge when a person opts out (merging and linking people, and
undoing either, are sharedrecord.identity's). A person's shown demographics are
recomputed by sharedrecord.demographics.
"""

from __future__ import annotations

import datetime
import enum
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import psycopg
from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Q
from django.utils import timezone

from sharedrecord import fhirjson
from sharedrecord.entrydata import EntryData
from sharedrecord.models import (
    Entry,
    Organisation,
    Patient,
    RemovedKey,
    SourceKey,
)
from sharedrecord.notifications.events import events_derive, events_write


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
    """Create the person for a valid NHS number (the caller holds patient_lock).

    The fields are checked here; uniqueness and the NHS number's form are the
    database's constraints, so they are not asked first in six more statements
    (under the lock, after the matcher found nobody, the insert is the check).
    """
    patient = Patient(nhs_number=nhs_number)
    patient.full_clean(validate_unique=False, validate_constraints=False)
    patient.save()
    return patient


class _Versioned(Protocol):
    """What _newer reads of a stored entry: an Entry, or a row of one."""

    @property
    def version_id(self) -> str: ...

    @property
    def source_updated_at(self) -> datetime.datetime | None: ...


def _newer(incoming: EntryData, existing: _Versioned) -> bool | None:
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


def entry_is_older(incoming: EntryData, existing: Entry) -> bool:
    """True when the versions tell that `incoming` is older than the stored entry."""
    return _newer(incoming, existing) is False


class _Stored(NamedTuple):
    """A stored entry as the upsert compares it (its resource is never read back)."""

    pk: int
    patient_id: int
    resource_type: str
    source_id: str
    content_hash: str
    version_id: str
    source_updated_at: datetime.datetime | None


_STORED = (
    "SELECT id, patient_id, resource_type, source_id, content_hash, version_id, "
    "source_updated_at FROM sharedrecord_entry"
)
# The columns COPY writes for a new entry, in order (id comes from its sequence).
_NEW_ENTRY_COLUMNS = (
    "public_id, patient_id, source_org_id, resource_type, source_id, received_at, section, "
    "source_system, version_id, source_updated_at, effective_at, status, code_system, code, "
    "code_display, sensitivity, codes, resource, content_hash, updated_at, feed_message_id"
)
_UPDATE_ENTRY = (
    "UPDATE sharedrecord_entry SET section = %s, source_system = %s, version_id = %s, "
    "source_updated_at = %s, effective_at = %s, status = %s, code_system = %s, code = %s, "
    "code_display = %s, sensitivity = %s::varchar[], codes = %s::varchar[], "
    "resource = %s::jsonb, content_hash = %s, updated_at = %s, feed_message_id = %s "
    "WHERE id = %s"
)
_STAMP_ENTRY = (
    "UPDATE sharedrecord_entry SET version_id = %s, source_updated_at = %s, "
    "resource = %s::jsonb WHERE id = %s"
)


def _columns(data: EntryData, *, source_system: str, now: datetime.datetime,
             feed_message_id: uuid.UUID | None) -> tuple[Any, ...]:  # fmt: skip
    """The columns an upsert writes from what the source sent, in _UPDATE_ENTRY's order."""
    return (
        data.section, source_system, data.version_id, data.source_updated_at, data.effective_at,
        data.status, data.code_system, data.code, data.code_display, list(data.sensitivity),
        list(data.codes), fhirjson.dumps(data.resource), data.content_hash, now, feed_message_id,
    )  # fmt: skip


def _server_bound_cursor() -> CursorWrapper:
    """A cursor on Django's connection (so in its transaction) binding parameters in the server.

    Django's own cursors interpolate parameters in Python (client-side
    binding), which for a big batch costs more than the statement; psycopg's
    server-side binding sends them apart and lets PostgreSQL prepare the
    statements a worker repeats. The queries still show in Django's query log.
    """
    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    # The stubs expect a CursorWrapper here; Django itself passes the driver's cursor.
    if connection.queries_logged:
        return connection.make_debug_cursor(raw)  # type: ignore[arg-type]
    return connection.make_cursor(raw)  # type: ignore[arg-type]


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

    Steps (a fixed handful of statements, however many items; parameters bound
    in the server, rows handled as tuples, not model objects):
    1. Create the missing keys in one statement, in key order (ON CONFLICT DO
       NOTHING: a concurrent insert of the same key is waited for, not an error).
    2. Lock this source's keys for these ids. For those that name another
       person, lock that person's entries: move the key (deleting the other
       entry) only where the incoming version is not older.
    3. Lock the existing entries (their version stamps and content hashes, not
       their resources); decide created / updated / unchanged / stale. A key
       holding no entry is STALE when the source removed it at a newer
       version (RemovedKey: one more statement when a message creates keys, and a
       delete when such a key is held stale or stored again).
    4. COPY the new entries in; update the changed ones (and the version stamps
       of unchanged content sent at a newer version) in one pipelined batch each.
       Step 2 locked every key, so nothing else can insert these entries meanwhile.
    5. Write the events the created and changed entries are (admission,
       result, ...: sharedrecord.notifications.events), one statement, only
       when there are any.
    """
    now = timezone.now()
    latest = {(item.resource_type, item.source_id): i for i, item in enumerate(items)}
    results = [UpsertResult.UNCHANGED] * len(items)
    if not latest:
        return results
    source_ids = sorted({source_id for _, source_id in latest})
    wanted_keys = sorted(latest)
    # Django's error classes for every statement, COPY included (it is the driver's own).
    with connection.wrap_database_errors, _server_bound_cursor() as cursor:
        # Claim the keys first: a concurrent message from the same source naming the
        # same resource waits here for the other transaction, then sees its row.
        cursor.execute(
            "INSERT INTO sharedrecord_sourcekey (source_org_id, resource_type, source_id, "
            "patient_id) SELECT %s, t, s, %s FROM unnest(%s::text[], %s::text[]) AS k(t, s) "
            "ON CONFLICT DO NOTHING",
            [source_org.pk, patient.pk, [t for t, _ in wanted_keys], [s for _, s in wanted_keys]],
        )
        cursor.execute(
            "SELECT resource_type, source_id, patient_id, id FROM sharedrecord_sourcekey "
            "WHERE source_org_id = %s AND source_id = ANY(%s::text[]) FOR UPDATE",
            [source_org.pk, source_ids],
        )
        keys: dict[tuple[str, str], tuple[int, int]] = {
            (t, s): (owner, pk) for t, s, owner, pk in cursor.fetchall() if (t, s) in latest
        }
        elsewhere = {w: key for w, key in keys.items() if key[0] != patient.pk}
        stale: set[tuple[str, str]] = set()
        if elsewhere:
            stale = _take_from_others(cursor, patient, source_org, items, latest, elsewhere)
        cursor.execute(
            f"{_STORED} WHERE patient_id = %s AND source_org_id = %s "
            "AND source_id = ANY(%s::text[]) FOR UPDATE",
            [patient.pk, source_org.pk, source_ids],
        )
        existing = {(row[2], row[3]): _Stored(*row) for row in cursor.fetchall()}
        # Keys no entry holds (one another person held is theirs to compare with).
        new = [w for w in latest if w not in existing and w not in stale and w not in elsewhere]
        if new:
            stale |= _removed_since(cursor, patient, source_org, items, latest, new)
        to_create: list[tuple[Any, ...]] = []
        to_update: list[tuple[Any, ...]] = []
        to_stamp: list[tuple[Any, ...]] = []
        for wanted, i in latest.items():
            data, entry = items[i], existing.get(wanted)
            if wanted in stale:
                results[i] = UpsertResult.STALE
                continue
            if entry is not None and entry.content_hash == data.content_hash:
                if _newer(data, entry):
                    to_stamp.append((data.version_id, data.source_updated_at,
                                     fhirjson.dumps(data.resource), entry.pk))  # fmt: skip
                continue
            if entry is not None and _newer(data, entry) is False:
                results[i] = UpsertResult.STALE
                continue
            columns = _columns(
                data, source_system=source_system, now=now, feed_message_id=feed_message_id
            )
            if entry is None:
                to_create.append((uuid.uuid4(), patient.pk, source_org.pk, data.resource_type,
                                  data.source_id, now, *columns))  # fmt: skip
                results[i] = UpsertResult.CREATED
            else:
                to_update.append((*columns, entry.pk))
                results[i] = UpsertResult.UPDATED
        if to_create:
            with cursor.copy(f"COPY sharedrecord_entry ({_NEW_ENTRY_COLUMNS}) FROM STDIN") as copy:
                for row in to_create:
                    copy.write_row(row)
        if to_update:
            cursor.executemany(_UPDATE_ENTRY, to_update)
        if to_stamp:
            cursor.executemany(_STAMP_ENTRY, to_stamp)
        changed = [items[i] for i in latest.values() if results[i] in _CHANGED]
        if changed:
            # Step 5: the facts among what was stored (notifications), in the same transaction.
            events_write(
                cursor,
                patient_id=patient.pk,
                source_org_id=source_org.pk,
                events=events_derive(changed, items),
                now=now,
            )
    return results


_CHANGED = (UpsertResult.CREATED, UpsertResult.UPDATED)


def _take_from_others(
    cursor: CursorWrapper,
    patient: Patient,
    source_org: Organisation,
    items: list[EntryData],
    latest: dict[tuple[str, str], int],
    elsewhere: dict[tuple[str, str], tuple[int, int]],
) -> set[tuple[str, str]]:
    """Step 2 of entries_upsert for keys naming another person; return the stale ones.

    What the other person holds at a newer version stays theirs (STALE); the
    rest moves: the other person's entry is deleted and the key names this one.
    """
    cursor.execute(
        f"{_STORED} WHERE source_org_id = %s AND patient_id = ANY(%s::bigint[]) "
        "AND source_id = ANY(%s::text[]) FOR UPDATE",
        [source_org.pk, sorted({owner for owner, _ in elsewhere.values()}),
         sorted({source_id for _, source_id in elsewhere})],
    )  # fmt: skip
    held: dict[tuple[str, str], _Stored] = {}
    for row in cursor.fetchall():
        other = _Stored(*row)
        wanted = (other.resource_type, other.source_id)
        if wanted in elsewhere and elsewhere[wanted][0] == other.patient_id:
            held[wanted] = other
    stale = {w for w, other in held.items() if _newer(items[latest[w]], other) is False}
    moving = [w for w in elsewhere if w not in stale]
    gone = [held[w].pk for w in moving if w in held]
    if gone:
        Entry.objects.filter(pk__in=gone).delete()
    if moving:
        SourceKey.objects.filter(pk__in=[elsewhere[w][1] for w in moving]).update(patient=patient)
    return stale


def _removed_since(
    cursor: CursorWrapper,
    patient: Patient,
    source_org: Organisation,
    items: list[EntryData],
    latest: dict[tuple[str, str], int],
    new: list[tuple[str, str]],
) -> set[tuple[str, str]]:
    """Step 3 of entries_upsert for keys holding no entry: those the source removed at a
    newer version (RemovedKey) are STALE, and the keys step 1 claimed for them go again;
    for the rest the removal is forgotten (the entry's own version will be compared).
    """
    cursor.execute(  # on removed_key_unique's three columns
        "SELECT resource_type, source_id, version_id, source_updated_at"
        " FROM sharedrecord_removedkey WHERE source_org_id = %s AND (resource_type, source_id)"
        " IN (SELECT t, s FROM unnest(%s::text[], %s::text[]) AS k(t, s))",
        [source_org.pk, [t for t, _ in new], [s for _, s in new]],
    )
    removed = {(t, s): _Removal(v, at) for t, s, v, at in cursor.fetchall()}
    stale = {w for w in new if w in removed and _newer(items[latest[w]], removed[w]) is False}
    if stale:
        SourceKey.objects.filter(named_keys(stale), source_org=source_org, patient=patient).delete()
    if revived := set(removed) - stale:
        RemovedKey.objects.filter(named_keys(revived), source_org=source_org).delete()
    return stale


def named_keys(keys: Iterable[tuple[str, str]]) -> Q:
    """Rows (entries, source keys, removals) naming any of these (resource type, source id).

    None for no keys (not every row).
    """
    where = Q(pk__in=[])
    for resource_type, source_id in keys:
        where |= Q(resource_type=resource_type, source_id=source_id)
    return where


class _Removal(NamedTuple):
    """A RemovedKey's version, as _newer reads it."""

    version_id: str
    source_updated_at: datetime.datetime | None


def entry_remove(
    *,
    source_org: Organisation,
    resource_type: str,
    source_id: str,
    version_id: str = "",
    source_updated_at: datetime.datetime | None = None,
    message_time: datetime.datetime | None = None,
    entered_in_error_for: Patient | None = None,
) -> Patient | None:
    """Remove a source's resource from the record (DELETE or entered-in-error).

    `version_id` and `source_updated_at` are the removed resource's own
    version stamps, as the source sent them with it; `message_time` (HL7 v2's
    MSH-7) dates a removal without them. A stored version newer than the
    removal is kept, as an older update would be.
    `entered_in_error_for`: the person whose message sent the resource as
    entered in error. Such a removal with the resource's own stamps is
    remembered (RemovedKey), held or not, so an older version arriving after
    it is not stored again (entries_upsert); the person's lock, which both
    take for that person, orders the two. A removal dated only by its message
    (a DELETE, an HL7 v2 A11 or A40, or any without a stamp of its own: MSH-7,
    while the versions it removes may carry EVN-2) is not remembered: what
    follows it could be misjudged older.
    Returns the person it belonged to, or None if the record never held it
    (or holds a newer version).
    """
    key = (
        SourceKey.objects.select_for_update()
        .select_related("patient")
        .filter(source_org=source_org, resource_type=resource_type, source_id=source_id)
        .first()
    )
    as_of = source_updated_at or message_time
    removal = EntryData(
        resource_type=resource_type, source_id=source_id, section="", resource={},
        content_hash="", version_id=version_id, source_updated_at=as_of,
    )  # fmt: skip
    versioned = bool(version_id or as_of)
    remembered_for = entered_in_error_for if version_id or source_updated_at else None
    if key is None:  # the record never held it (or the removal came first): remember it
        if remembered_for is not None:
            _removal_remember(source_org, removal, remembered_for)
        return None
    stored = Entry.objects.filter(
        patient=key.patient, source_org=source_org, resource_type=resource_type, source_id=source_id
    )
    if versioned and any(_newer(removal, e) is False for e in stored):
        return None
    if remembered_for is not None:
        _removal_remember(source_org, removal, remembered_for)
    deleted, _ = stored.delete()
    patient = key.patient
    key.delete()
    return patient if deleted else None


def _removal_remember(source_org: Organisation, removal: EntryData, patient: Patient) -> None:
    """Keep the newest removal of a source's resource, linked to the person it was for."""
    kept = (
        RemovedKey.objects.select_for_update()
        .filter(
            source_org=source_org,
            resource_type=removal.resource_type,
            source_id=removal.source_id,
        )
        .first()
    )
    if kept is None:
        kept = RemovedKey(
            source_org=source_org, resource_type=removal.resource_type,
            source_id=removal.source_id, patient=patient,
        )  # fmt: skip
    elif _newer(removal, kept) is not True:  # as old as what is kept, or cannot tell
        return
    kept.patient = patient  # the newest removal's person
    kept.version_id, kept.source_updated_at = removal.version_id, removal.source_updated_at
    # Its unique key is the database's to hold (a concurrent twin fails, and is retried).
    kept.full_clean(validate_unique=False, validate_constraints=False)
    kept.save()


@dataclass(frozen=True)
class PurgeResult:
    patient_id: uuid.UUID | None
    counts: dict[str, int]
    source_ods: tuple[str, ...]  # who had sent data: they re-send if the person opts back in


def patient_purge(*, nhs_number: str) -> PurgeResult:
    """Remove everything the record holds for a person: the patient, entries, source keys.

    What their sources withdrew (RemovedKey) goes with the patient row (CASCADE).

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
