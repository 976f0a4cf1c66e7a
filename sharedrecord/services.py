"""Writes to organisations and staff."""

from __future__ import annotations

import datetime
import enum
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm

from audit.models import AuditAction
from audit.services import AuditContext, AuditSubject, audit_event_record
from sharedrecord.access import patients_visible_to
from sharedrecord.auditing import actor_for
from sharedrecord.matching import nhs_number_is_valid, nhs_number_normalise
from sharedrecord.models import (
    Entry,
    Organisation,
    OrganisationKind,
    Patient,
    SourceKey,
    StaffRole,
    User,
)


@transaction.atomic
def organisation_upsert(
    *,
    ods_code: str,
    name: str,
    kind: str,
    dsa_start: datetime.date | None,
    dsa_end: datetime.date | None = None,
) -> Organisation:
    """Create or update the organisation with this ODS code; repeating it changes nothing."""
    org = Organisation.objects.filter(ods_code=ods_code.upper()).first() or Organisation(
        ods_code=ods_code.upper()
    )
    org.name, org.kind, org.dsa_start, org.dsa_end = name, kind, dsa_start, dsa_end
    org.full_clean()
    org.save()
    return org


@transaction.atomic
def staff_user_upsert(
    *,
    username: str,
    organisation: Organisation,
    role: StaffRole,
    first_name: str,
    last_name: str,
    password: str | None,
) -> User:
    """Create or update a member of staff.

    A password of None leaves an existing password alone and gives a new
    user an unusable one (to be set through the admin's reset).
    """
    user = User.objects.filter(username=username).first() or User(username=username)
    user.organisation, user.role = organisation, role
    user.first_name, user.last_name = first_name, last_name
    # Only re-hash when the password differs, so re-running the seed is a no-op.
    if password is not None and not user.check_password(password):
        user.set_password(password)
    elif user.pk is None:
        user.set_unusable_password()
    user.full_clean()
    user.save()
    return user


def organisation_grant_optout_management(*, user: User, organisation: Organisation) -> None:
    """Let a member of a GP practice record opt-outs for that practice (idempotent)."""
    assign_perm("sharedrecord.manage_optouts", user, organisation)


# ---------------------------------------------------------------- the combined record

ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"


class UpsertResult(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    STALE = "stale"


@dataclass(frozen=True)
class EntryData:
    """One validated source resource and its typed columns (from ingestion's parser)."""

    resource_type: str
    source_id: str
    section: str
    resource: dict[str, Any]
    content_hash: str
    version_id: str = ""
    source_updated_at: datetime.datetime | None = None
    effective_at: datetime.datetime | None = None
    status: str = ""
    code_system: str = ""
    code: str = ""
    code_display: str = ""
    sensitivity: tuple[str, ...] = ()


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
    """True if newer, False if older, None if the versions cannot tell."""
    mine, theirs = incoming.version_id, existing.version_id
    if mine.isdigit() and theirs.isdigit() and int(mine) != int(theirs):
        return int(mine) > int(theirs)
    new_time, old_time = incoming.source_updated_at, existing.source_updated_at
    if new_time and old_time and new_time != old_time:
        return new_time > old_time
    return None


ENTRY_FIELDS = (
    "section", "source_system", "version_id", "source_updated_at", "effective_at", "status",
    "code_system", "code", "code_display", "sensitivity", "resource", "content_hash",
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
    is ignored (STALE). A resource the source now files under another person
    moves. When a key repeats in `items`, the last one wins and the earlier
    ones count as unchanged. The caller holds patient_lock and has asked the
    opt-out gate. Returns one result per item, in order.

    Steps (a fixed handful of statements, however many items):
    1. Lock this source's keys for these ids; move any that name another person.
    2. Create the missing keys.
    3. Lock the existing entries; decide created / updated / unchanged / stale.
    4. bulk_create the new entries, bulk_update the changed ones.
    """
    now = timezone.now()
    latest = {(item.resource_type, item.source_id): i for i, item in enumerate(items)}
    results = [UpsertResult.UNCHANGED] * len(items)
    source_ids = {source_id for _, source_id in latest}
    keys = {
        (row.resource_type, row.source_id): row
        for row in SourceKey.objects.select_for_update().filter(
            source_org=source_org, source_id__in=source_ids
        )
        if (row.resource_type, row.source_id) in latest
    }
    moved = [row for row in keys.values() if row.patient_id != patient.pk]
    for row in moved:
        Entry.objects.filter(
            patient_id=row.patient_id,
            source_org=source_org,
            resource_type=row.resource_type,
            source_id=row.source_id,
        ).delete()
    if moved:
        SourceKey.objects.filter(pk__in=[row.pk for row in moved]).update(patient=patient)
    SourceKey.objects.bulk_create(
        SourceKey(source_org=source_org, resource_type=t, source_id=s, patient=patient)
        for (t, s) in latest
        if (t, s) not in keys
    )
    existing = {
        (entry.resource_type, entry.source_id): entry
        for entry in Entry.objects.select_for_update().filter(
            patient=patient, source_org=source_org, source_id__in=source_ids
        )
    }
    to_create: list[Entry] = []
    to_update: list[Entry] = []
    for wanted, i in latest.items():
        data, entry = items[i], existing.get(wanted)
        if entry is not None and entry.content_hash == data.content_hash:
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
    return results


def entry_remove(*, source_org: Organisation, resource_type: str, source_id: str) -> Patient | None:
    """Remove a source's resource from the record (DELETE or entered-in-error).

    Returns the person it belonged to, or None if the record never held it.
    """
    key = (
        SourceKey.objects.select_for_update()
        .select_related("patient")
        .filter(source_org=source_org, resource_type=resource_type, source_id=source_id)
        .first()
    )
    if key is None:
        return None
    deleted, _ = Entry.objects.filter(
        patient=key.patient, source_org=source_org, resource_type=resource_type, source_id=source_id
    ).delete()
    patient = key.patient
    key.delete()
    return patient if deleted else None


def _first(items: Any) -> dict[str, Any]:
    return items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}


def _registered_gp(resource: dict[str, Any]) -> str:
    for ref in resource.get("generalPractitioner", []):
        identifier = ref.get("identifier", {}) if isinstance(ref, dict) else {}
        if identifier.get("system") == ODS_SYSTEM and identifier.get("value"):
            return str(identifier["value"]).upper()[:12]
    return ""


def patient_demographics_refresh(*, patient: Patient) -> Patient:
    """Recompute the shown demographics from every source's Patient resource.

    Precedence: the registered GP practice's own resource first, then the
    most recently updated source.
    """
    sources = list(
        Entry.objects.filter(patient=patient, resource_type="Patient")
        .select_related("source_org")
        .order_by("-updated_at", "-id")
    )
    if not sources:
        return patient
    registered = next((gp for e in sources if (gp := _registered_gp(e.resource))), "")
    gp_sent = [e for e in sources if e.source_org.kind == OrganisationKind.GP_PRACTICE]
    if not registered and gp_sent:
        registered = gp_sent[0].source_org.ods_code
    chosen = next((e for e in sources if e.source_org.ods_code == registered), sources[0])
    resource = chosen.resource
    name = next(
        (n for n in resource.get("name", []) if n.get("use") == "official"),
        _first(resource.get("name")),
    )
    address = next(
        (a for a in resource.get("address", []) if a.get("use") in ("home", None)),
        _first(resource.get("address")),
    )
    patient.family_name = str(name.get("family", ""))[:200]
    patient.given_names = " ".join(name.get("given", []))[:200]
    birth = resource.get("birthDate")
    patient.birth_date = (
        datetime.date.fromisoformat(birth) if isinstance(birth, str) and len(birth) == 10 else None
    )
    patient.gender = str(resource.get("gender", ""))[:16]
    patient.postcode = str(address.get("postalCode", ""))[:10]
    patient.address = ", ".join([*address.get("line", []), address.get("city", "")]).strip(", ")[
        :400
    ]
    patient.deceased = bool(resource.get("deceasedDateTime") or resource.get("deceasedBoolean"))
    patient.registered_gp_ods = registered
    patient.demographics_source_ods = chosen.source_org.ods_code
    patient.save()
    return patient


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


def patient_search(
    *, viewer: User, nhs_number: str, context: AuditContext | None = None
) -> Patient | None:
    """Find a person by NHS number for this viewer; an audited read.

    Returns None alike when nobody has that number, when the person opted out
    (they have no record) and when the viewer may not see them. Side effects:
    one audit event, naming the number searched for.
    """
    number = nhs_number_normalise(nhs_number)
    patient = None
    if nhs_number_is_valid(number):
        patient = patients_visible_to(viewer).filter(nhs_number=number).first()
    audit_event_record(
        action=AuditAction.PATIENT_SEARCH,
        actor=actor_for(viewer),
        subject=AuditSubject(
            patient_id=patient.public_id if patient else None,
            nhs_number=number if nhs_number_is_valid(number) else "",
            gp_ods=patient.registered_gp_ods if patient else "",
        ),
        detail={"by": "nhs-number", "found": 1 if patient else 0},
        context=context,
    )
    return patient
