"""Writes to organisations and staff."""

from __future__ import annotations

import datetime
import enum
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, Max, Q, QuerySet, Value
from django.db.models.functions import Replace, Upper
from django.utils import timezone
from django.utils.text import slugify
from guardian.shortcuts import assign_perm

from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditActor, AuditContext, AuditSubject, audit_event_record
from sharedrecord.access import (
    Relationship,
    ViewPolicy,
    access_basis_current,
    entries_visible,
    entry_is_sensitive,
    may_assert_registration,
    patient_get_for_viewer,
    patients_visible_to,
    policy_table,
    registration_asserted,
    relationships_of,
    session_key_hash,
    view_policy,
)
from sharedrecord.auditing import actor_for
from sharedrecord.exceptions import AccessBasisRequired, PatientNotFound, SectionNotAvailable
from sharedrecord.matching import nhs_number_is_valid, nhs_number_normalise
from sharedrecord.models import (
    CLINICAL_ROLES,
    AccessBasis,
    BasisKind,
    Entry,
    Organisation,
    OverrideReason,
    Patient,
    RecordSection,
    SourceKey,
    StaffRole,
    User,
)
from sharedrecord.presentation.entries import (
    ACTIVE_CLINICAL,
    CURRENT_MEDICATION,
    NO_KNOWN_ALLERGIES,
    NO_KNOWN_ALLERGY_CODES,
    NOT_A_PROBLEM,
    UPCOMING_APPOINTMENT,
    ShownEntry,
    entry_shown,
    linked_references,
    reference_id,
)
from sharedrecord.presentation.trends import Trend, trends_of
from sharedrecord.presenting import Attachment, attachment_of


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
    codes: tuple[str, ...] = ()


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


def _first(items: Any) -> dict[str, Any]:
    return items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}


# The demographic fields a source's Patient resource gives, grouped as the
# banner shows them, and what the page and the API call each when sources
# disagree (Patient.disputed_labels).
DEMOGRAPHIC_GROUPS: dict[str, tuple[str, ...]] = {
    "name": ("family", "given"),
    "birth-date": ("birth_date",),
    "gender": ("gender",),
    "address": ("postcode", "address"),
    "death": ("deceased_at", "deceased"),
}


def _demographics_of(resource: dict[str, Any]) -> dict[str, str]:
    """The shown demographic fields of one source's Patient resource ("" where not sent)."""
    name = next(
        (n for n in resource.get("name", []) if n.get("use") == "official"),
        _first(resource.get("name")),
    )
    address = next(
        (a for a in resource.get("address", []) if a.get("use") in ("home", None)),
        _first(resource.get("address")),
    )
    birth = resource.get("birthDate")
    died = resource.get("deceasedDateTime")
    alive = resource.get("deceasedBoolean")
    return {
        "family": str(name.get("family", ""))[:200],
        "given": " ".join(name.get("given", []))[:200],
        "birth_date": birth if isinstance(birth, str) and len(birth) == 10 else "",
        "gender": str(resource.get("gender", ""))[:16],
        "postcode": str(address.get("postalCode", ""))[:10],
        "address": ", ".join([*address.get("line", []), address.get("city", "")]).strip(", ")[:400],
        "deceased_at": died[:40] if isinstance(died, str) else "",
        "deceased": "yes" if died or alive is True else ("no" if alive is False else ""),
    }


def _plain(value: str) -> str:
    return "".join(value.split()).upper()


def _disputed(shown: dict[str, str], others: list[dict[str, str]]) -> list[str]:
    """The groups on which another source holds a different value.

    A field is compared only where both sides have it: a source that sends
    no given names does not dispute the name.
    """
    disputed = []
    for group, keys in DEMOGRAPHIC_GROUPS.items():
        for other in others:
            if any(shown[k] and other[k] and _plain(shown[k]) != _plain(other[k]) for k in keys):
                disputed.append(group)
                break
    return disputed


def _demographic_precedence(sources: list[Entry], registered: str) -> list[Entry]:
    """The sources in the order the shown demographics take them.

    The registration authority's (its newest statement first), then the
    registered practice's own, then every other source, most recently
    received first (our clock, not the senders').
    """

    def rank(entry: Entry) -> int:
        if may_assert_registration(entry.source_org):
            return 0
        return 1 if entry.source_org.ods_code == registered else 2

    newest = sorted(sources, key=lambda e: (e.updated_at, e.id), reverse=True)
    authority = sorted(
        (e for e in newest if rank(e) == 0),
        key=lambda e: (e.source_updated_at or e.updated_at, e.updated_at, e.id),
        reverse=True,
    )
    return [*authority, *(e for e in newest if rank(e) == 1), *(e for e in newest if rank(e) == 2)]


def patient_demographics_refresh(
    *, patient: Patient, asserted_by: AuditActor | None = None
) -> Patient:
    """Recompute the shown demographics and the registered practice from the sources.

    The registered practice comes only from its authorities
    (access.registration_asserted). The shown demographics follow the same
    precedence, field group by field group: each group (name, date of birth,
    sex, address, death) from the first source in precedence that sends it
    (_demographic_precedence). Groups on which another shared source
    (active agreement, not very restricted) holds a different value are kept
    in demographics_disputed, so the page and the API can say so.
    Side effects: when the registered practice moves or is cleared, one
    audit event (registration-change) naming the old and new practice, with
    `asserted_by` (default the ingestion system) as its actor.
    """
    sources = list(
        Entry.objects.filter(patient=patient, resource_type="Patient").select_related("source_org")
    )
    previous = patient.registered_gp_ods
    registered = registration_asserted(sources=sources, current=previous)
    ordered = _demographic_precedence(sources, registered)
    found = [_demographics_of(e.resource) for e in ordered]
    shown = dict.fromkeys(_demographics_of({}), "")
    for keys in DEMOGRAPHIC_GROUPS.values():
        giver = next((f for f in found if any(f[k] for k in keys)), None)
        if giver is not None:
            shown.update({k: giver[k] for k in keys})
    # Every group comes from `shown`: with no Patient left from any source (all
    # withdrawn or moved away) they are cleared, not kept from a source that no
    # longer says so.
    patient.family_name, patient.given_names = shown["family"], shown["given"]
    patient.birth_date = (
        datetime.date.fromisoformat(shown["birth_date"]) if shown["birth_date"] else None
    )
    patient.gender, patient.postcode, patient.address = (
        shown["gender"],
        shown["postcode"],
        shown["address"],
    )
    patient.deceased_at = shown["deceased_at"]
    patient.deceased = shown["deceased"] == "yes"
    patient.demographics_source_ods = ordered[0].source_org.ods_code if ordered else ""
    very_restricted = policy_table().sensitivity.very_restricted_labels
    shared = Organisation.objects.with_active_agreement()
    patient.demographics_disputed = _disputed(
        shown,
        [
            found[i]
            for i, entry in enumerate(ordered)
            if entry.source_org in shared and not very_restricted.intersection(entry.sensitivity)
        ],
    )
    patient.registered_gp_ods = registered
    patient.save()
    if registered != previous and previous:
        audit_event_record(
            action=AuditAction.REGISTRATION_CHANGE,
            actor=asserted_by or AuditActor.system("ingestion"),
            subject=AuditSubject(
                patient_id=patient.public_id, nhs_number=patient.nhs_number, gp_ods=registered
            ),
            detail={"from": previous, "to": registered},
            source_ods=[ods for ods in (previous, registered) if ods],
        )
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
    *,
    viewer: User,
    nhs_number: str,
    context: AuditContext | None = None,
    actor: AuditActor | None = None,
    detail: dict[str, Any] | None = None,
) -> Patient | None:
    """Find a person by NHS number for this viewer; an audited read.

    Returns None alike when nobody has that number, when the person opted out
    (they have no record) and when the viewer may not see them. Side effects:
    one audit event, naming the number searched for (as `actor`, default the
    viewer, with `detail` added: the API names its client there).
    """
    number = nhs_number_normalise(nhs_number)
    patient = None
    if nhs_number_is_valid(number):
        patient = patients_visible_to(viewer).filter(nhs_number=number).first()
    audit_event_record(
        action=AuditAction.PATIENT_SEARCH,
        actor=actor or actor_for(viewer),
        subject=AuditSubject(
            patient_id=patient.public_id if patient else None,
            nhs_number=number if nhs_number_is_valid(number) else "",
            gp_ods=patient.registered_gp_ods if patient else "",
        ),
        detail={"by": "nhs-number", "found": 1 if patient else 0, **(detail or {})},
        context=context,
    )
    return patient


SEARCH_RESULT_CAP = 5


@dataclass(frozen=True)
class SearchResult:
    patients: list[Patient]
    too_many: bool  # more people match than the cap: none are shown, the search must narrow


def patient_search_by_demographics(
    *,
    viewer: User,
    family_name: str,
    birth_date: datetime.date,
    postcode: str = "",
    gender: str = "",
    context: AuditContext | None = None,
    actor: AuditActor | None = None,
    detail: dict[str, Any] | None = None,
) -> SearchResult:
    """Find people by family name and date of birth (and postcode or sex); an audited read.

    Exact matches only (case and spacing aside), at most SEARCH_RESULT_CAP
    people: more matches show none and ask for more detail, so the search
    cannot be used to browse. Side effects: one audit event naming the people
    found (ids only; the searched-for name is not kept).
    """
    people = patients_visible_to(viewer).filter(
        Q(family_name__iexact=family_name.strip()), birth_date=birth_date
    )
    if postcode.strip():
        people = people.annotate(
            postcode_plain=Replace(Upper("postcode"), Value(" "), Value(""))
        ).filter(postcode_plain=postcode.replace(" ", "").upper())
    if gender:
        people = people.filter(gender=gender)
    found = list(people.order_by("family_name", "given_names", "id")[: SEARCH_RESULT_CAP + 1])
    too_many = len(found) > SEARCH_RESULT_CAP
    shown = [] if too_many else found
    audit_event_record(
        action=AuditAction.PATIENT_SEARCH,
        actor=actor or actor_for(viewer),
        detail={
            **(detail or {}),
            "by": "demographics",
            "with": sorted(k for k, v in {"postcode": postcode, "sex": gender}.items() if v),
            "found": len(found) if not too_many else f">{SEARCH_RESULT_CAP}",
            "patients": [str(p.public_id) for p in shown],
        },
        context=context,
    )
    return SearchResult(shown, too_many)


def organisation_feed_seen(*, organisation_id: int) -> None:
    """Note that an organisation's feed delivered data now (for the sources panel).

    Called after a message commits, in its own short statement; it skips the
    write when the time was noted in the last minute, so a busy feed does not
    queue its workers on the organisation's row.
    """
    now = timezone.now()
    Organisation.objects.filter(pk=organisation_id).filter(
        Q(last_feed_at__isnull=True) | Q(last_feed_at__lt=now - datetime.timedelta(minutes=1))
    ).update(last_feed_at=now)


# ---------------------------------------------------------------- reading a record


def audit_subject_of(patient: Patient) -> AuditSubject:
    return AuditSubject(
        patient_id=patient.public_id,
        nhs_number=patient.nhs_number,
        gp_ods=patient.registered_gp_ods,
    )


def patient_or_denied(
    *,
    viewer: User,
    patient_id: str,
    context: AuditContext | None,
    asked: str,
    actor: AuditActor | None = None,
) -> Patient:
    """The person, or an audited denial (written before the error leaves, so it commits).

    Call it outside any transaction that the error would roll back.
    """
    try:
        return patient_get_for_viewer(viewer=viewer, patient_id=patient_id)
    except PatientNotFound:
        audit_event_record(
            action=AuditAction.ACCESS_DENIED,
            actor=actor or actor_for(viewer),
            outcome=AuditOutcome.DENIED,
            detail={"asked": asked, "patient": str(patient_id)[:40], "reason": "not-found"},
            context=context,
        )
        raise


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


@dataclass(frozen=True)
class SourceRow:
    """One connected organisation, for the "where this record comes from" panel."""

    name: str
    ods_code: str
    kind: str
    last_feed_at: datetime.datetime | None
    items_for_person: int
    latest_for_person: datetime.datetime | None


@dataclass
class Summary:
    alerts: list[ShownEntry]
    allergies: list[ShownEntry]
    no_known_allergies: list[ShownEntry]
    medications: list[ShownEntry]
    problems: list[ShownEntry]
    encounters: list[ShownEntry]
    results: list[ShownEntry]
    appointments: list[ShownEntry]
    care_plans: list[ShownEntry]

    @property
    def no_known_statements(self) -> list[tuple[str, str, ShownEntry]]:
        """(what the code says, what it leaves open, the item) for each "no known …" entry."""
        return [(*NO_KNOWN_ALLERGIES[item.code], item) for item in self.no_known_allergies]

    def blocks(self) -> list[tuple[str, str, list[ShownEntry], str]]:
        """(section, heading, items, what to say when empty), in the page's order."""
        return [
            ("alerts", "Alerts and flags", self.alerts, "No alerts recorded."),
            ("allergies", "Allergies and adverse reactions", self.allergies, ""),
            ("medications", "Current medications", self.medications,
             "No current medications shared."),
            ("problems", "Active problems", self.problems, "No active problems shared."),
            ("encounters", "Recent encounters", self.encounters, "No encounters shared."),
            ("results", "Recent results", self.results, "No results shared."),
            ("appointments", "Upcoming appointments", self.appointments,
             "No upcoming appointments shared."),
            ("care-plans", 'Care plans and "about me"', self.care_plans,
             "No care plans shared."),
        ]  # fmt: skip


@dataclass
class CombinedRecord:
    """What one viewer may see of one person's record, now; built by record_view."""

    patient: Patient
    basis: AccessBasis
    policy: ViewPolicy
    registered_gp: Organisation | None
    sources: list[SourceRow]
    withheld: int
    hidden_sections: list[str]
    section: str | None = None
    summary: Summary | None = None
    items: list[ShownEntry] | None = None
    total_in_section: int = 0
    trends: list[Trend] | None = None


SECTION_PAGE_LIMIT = 500
SUMMARY_RECENT = 5


def _one_shown(
    entry: Entry,
    policy: ViewPolicy,
    now: datetime.datetime,
    linked: dict[str, ShownEntry] | None = None,
) -> ShownEntry:
    return entry_shown(
        public_id=str(entry.public_id),
        resource_type=entry.resource_type,
        section=entry.section,
        resource=policy.redact(entry.resource_type, entry.resource),
        effective_at=entry.effective_at,
        status=entry.status,
        code=entry.code,
        source_name=entry.source_org.name,
        source_ods=entry.source_org.ods_code,
        updated_at=entry.updated_at,
        sensitive=entry_is_sensitive(entry),
        now=now,
        linked=linked,
    )


def _linked_results(
    entries: list[Entry], policy: ViewPolicy, visible: QuerySet[Entry], now: datetime.datetime
) -> dict[int, dict[str, ShownEntry]]:
    """For each report (or panel), the results it links to that this viewer may see.

    One query for the whole page: a report's references name its sender's own
    results (by source id), looked up among the viewer's visible entries only,
    so a withheld result never shows through the report that names it.
    """
    wanted: dict[int, list[tuple[str, tuple[int, str]]]] = {}
    for entry in entries:
        for reference in linked_references(entry.resource_type, entry.resource):
            kind, source_id = reference_id(reference)
            if kind in ("", "Observation") and source_id:
                key = (entry.source_org_id, source_id)
                wanted.setdefault(entry.pk, []).append((reference, key))
    if not wanted:
        return {}
    keys = {key for refs in wanted.values() for _, key in refs}
    found = {
        (e.source_org_id, e.source_id): _one_shown(e, policy, now)
        for e in visible.filter(
            resource_type="Observation",
            source_org_id__in={org for org, _ in keys},
            source_id__in={source_id for _, source_id in keys},
        )
    }
    return {
        pk: {reference: found[key] for reference, key in refs if key in found}
        for pk, refs in wanted.items()
    }


def _shown(
    entries: Any, policy: ViewPolicy, visible: QuerySet[Entry] | None = None
) -> list[ShownEntry]:
    """Entries as the page shows them, without the elements the policy withholds.

    With `visible` (what the viewer may see), a report's row shows the results
    it links to.
    """
    now = timezone.now()
    rows = list(entries)
    linked = _linked_results(rows, policy, visible, now) if visible is not None else {}
    return [_one_shown(e, policy, now, linked.get(e.pk)) for e in rows]


def _summary(visible: QuerySet[Entry], policy: ViewPolicy) -> Summary:
    """What the summary lists as current: each filter says what "current" means.

    An alert whose period has ended, a problem whose diagnosis was refuted and
    a medicine or plan that is complete are not current; they stay in their
    sections, with their qualifiers.
    """
    now = timezone.now()
    newest = ("-effective_at", "-id")

    def part(
        section: RecordSection, where: Q, order: tuple[str, ...] = newest, limit: int | None = None
    ) -> list[ShownEntry]:
        if not policy.may_see_section(section):
            return []
        query = visible.filter(where, section=section).exclude(status="entered-in-error")
        return _shown(query.order_by(*order)[:limit], policy, visible)

    allergies = part(RecordSection.ALLERGIES, Q())
    return Summary(
        alerts=[a for a in part(RecordSection.ALERTS, Q(status="active")) if a.current],
        allergies=[a for a in allergies if a.code not in NO_KNOWN_ALLERGY_CODES],
        no_known_allergies=[a for a in allergies if a.code in NO_KNOWN_ALLERGY_CODES],
        medications=part(RecordSection.MEDICATIONS, Q(status__in=CURRENT_MEDICATION)),
        problems=[
            p
            for p in part(RecordSection.PROBLEMS, Q(status__in=ACTIVE_CLINICAL))
            if p.verification not in NOT_A_PROBLEM
        ],
        encounters=part(RecordSection.ENCOUNTERS, Q(effective_at__lte=now), limit=SUMMARY_RECENT),
        results=part(
            RecordSection.RESULTS,
            Q(resource_type__in=("Observation", "DiagnosticReport")),
            limit=SUMMARY_RECENT,
        ),
        appointments=part(
            RecordSection.APPOINTMENTS,
            Q(effective_at__gte=now, status__in=UPCOMING_APPOINTMENT),
            order=("effective_at", "id"),
            limit=SUMMARY_RECENT,
        ),
        care_plans=part(RecordSection.CARE_PLANS, Q(status="active")),
    )


def _audited(shown: list[ShownEntry]) -> list[str]:
    """Every entry whose content a page shows: its rows, and the results shown on them."""
    return list(dict.fromkeys(i for item in shown for i in (item.public_id, *item.linked_entries)))


def _sources(visible: QuerySet[Entry]) -> list[SourceRow]:
    """Every connected organisation, with what it holds for the person that the viewer may see.

    Counted from the viewer's visible clinical entries only: an
    organisation's withheld items are never counted against it (they are
    counted once, overall, in CombinedRecord.withheld), and its copy of the
    person's demographics is not an item (it would tell that the
    organisation knows the person, whatever the viewer may see of its care).
    """
    connected = Organisation.objects.with_active_agreement().order_by("kind", "name")
    mine = {
        row["source_org"]: row
        for row in visible.exclude(section=RecordSection.DEMOGRAPHICS)
        .order_by()
        .values("source_org")
        .annotate(n=Count("id"), latest=Max("updated_at"))
    }
    return [
        SourceRow(
            name=org.name,
            ods_code=org.ods_code,
            kind=org.get_kind_display(),
            last_feed_at=org.last_feed_at,
            items_for_person=mine.get(org.pk, {}).get("n", 0),
            latest_for_person=mine.get(org.pk, {}).get("latest"),
        )
        for org in connected
    ]


def record_view(
    *,
    viewer: User,
    patient_id: str,
    session_key: str,
    section: str | None = None,
    context: AuditContext | None = None,
) -> CombinedRecord:
    """The record (its summary, or one section) as this viewer may see it; an audited read.

    Fails closed: without a current basis it raises AccessBasisRequired and
    shows nothing; a section outside the viewer's role raises
    SectionNotAvailable (audited as a denial); if the audit write fails,
    the error propagates and nothing is returned.
    Side effects: one audit event listing the entries shown and the count
    withheld.
    """
    patient = patient_or_denied(
        viewer=viewer, patient_id=patient_id, context=context, asked="record"
    )
    basis = access_basis_current(viewer=viewer, patient=patient, session_key=session_key)
    if basis is None:
        raise AccessBasisRequired("Record why you are viewing this record first.")
    policy = view_policy(viewer=viewer, basis=basis)
    if section is not None and not policy.may_see_section(section):
        audit_event_record(
            action=AuditAction.ACCESS_DENIED,
            actor=actor_for(viewer),
            outcome=AuditOutcome.DENIED,
            subject=audit_subject_of(patient),
            detail={"asked": "section", "section": section, "reason": "role"},
            context=context,
        )
        raise SectionNotAvailable("Your role does not include this part of the record.")
    with transaction.atomic():
        everything = entries_visible(patient=patient, policy=policy)
        visible = (
            entries_visible(patient=patient, policy=policy, sections=frozenset({section}))
            if section
            else everything
        )
        record = CombinedRecord(
            patient=patient,
            basis=basis,
            policy=policy,
            registered_gp=Organisation.objects.filter(ods_code=patient.registered_gp_ods).first()
            if patient.registered_gp_ods
            else None,
            sources=_sources(everything.entries),
            withheld=everything.withheld,
            hidden_sections=[
                label for value, label in RecordSection.choices if value not in policy.sections
            ],
            section=section,
        )
        if section is None:
            record.summary = _summary(visible.entries, policy)
            shown = [item for part in vars(record.summary).values() for item in part]
        else:
            ordered = visible.entries.order_by("-effective_at", "-id")
            record.total_in_section = ordered.count()
            record.items = _shown(ordered[:SECTION_PAGE_LIMIT], policy, visible.entries)
            if section == RecordSection.RESULTS:
                record.trends = trends_of(record.items)
            shown = record.items
        audit_event_record(
            action=AuditAction.SECTION_VIEW if section else AuditAction.RECORD_VIEW,
            actor=actor_for(viewer),
            subject=audit_subject_of(patient),
            purpose="ETREAT" if policy.break_glass else "TREAT",
            detail={
                "basis": str(basis.public_id),
                "section": section or "summary",
                "entries": _audited(shown),
                "withheld": everything.withheld,
                "break_glass": policy.break_glass,
            },
            source_ods={item.source_ods for item in shown},
            context=context,
        )
    return record


@dataclass(frozen=True)
class DocumentShown:
    patient: Patient
    entry: ShownEntry
    attachment: Attachment | None


def document_view(
    *,
    viewer: User,
    patient_id: str,
    entry_id: str,
    session_key: str,
    context: AuditContext | None = None,
) -> DocumentShown:
    """One document of the record, opened; the same policy as the documents section.

    Raises PatientNotFound alike for a document that does not exist and one
    the viewer may not see. Side effects: one audit event (document-view).
    """
    patient = patient_or_denied(
        viewer=viewer, patient_id=patient_id, context=context, asked="document"
    )
    basis = access_basis_current(viewer=viewer, patient=patient, session_key=session_key)
    if basis is None:
        raise AccessBasisRequired("Record why you are viewing this record first.")
    policy = view_policy(viewer=viewer, basis=basis)
    visible = entries_visible(
        patient=patient, policy=policy, sections=frozenset({RecordSection.DOCUMENTS.value})
    )
    entry = visible.entries.filter(public_id=entry_id).first() if is_uuid(entry_id) else None
    if entry is None:
        audit_event_record(
            action=AuditAction.ACCESS_DENIED,
            actor=actor_for(viewer),
            outcome=AuditOutcome.DENIED,
            subject=audit_subject_of(patient),
            detail={"asked": "document", "entry": str(entry_id)[:40], "reason": "not-visible"},
            context=context,
        )
        raise PatientNotFound("No such document is available to you.")
    with transaction.atomic():
        audit_event_record(
            action=AuditAction.DOCUMENT_VIEW,
            actor=actor_for(viewer),
            subject=audit_subject_of(patient),
            purpose="ETREAT" if policy.break_glass else "TREAT",
            detail={"basis": str(basis.public_id), "entries": [str(entry.public_id)]},
            source_ods=[entry.source_org.ods_code],
            context=context,
        )
    return DocumentShown(
        patient, _one_shown(entry, policy, timezone.now()), attachment_of(entry.resource)
    )


def is_uuid(value: str) -> bool:
    """True for a well-formed UUID (public ids); anything else cannot name a row."""
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


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


# ---------------------------------------------------------------- read API clients


@dataclass(frozen=True)
class ApiClientIssued:
    client_id: str
    client_secret: str  # shown once: only its hash is kept
    service_account: User | None


GRANTS = ("client-credentials", "authorization-code")


@transaction.atomic
def api_client_register(
    *,
    name: str,
    grant: str,
    organisation: Organisation | None = None,
    role: str = "",
    redirect_uris: str = "",
    client_id: str = "",
    client_secret: str = "",
) -> ApiClientIssued:
    """Register an application with the FHIR read API (django-oauth-toolkit); print-once secret.

    - client-credentials: a partner system. It reads as a service account of
      `organisation` with `role` (a clinical or care role) and no usable
      password, so the access policy treats it as that organisation's staff.
    - authorization-code: a staff-facing application; each token carries
      the signed-in member of staff, whose own role and organisation apply.
      It needs exact redirect URIs, and PKCE (settings).
    Given a client_id that exists, it updates that client (and its secret,
    if one is given): re-running the demo seed changes nothing.
    Side effects: one audit event (admin-change).
    """
    from oauth2_provider.models import get_application_model

    application_model = get_application_model()
    if grant not in GRANTS:
        raise ValidationError({"grant": f"Choose one of {', '.join(GRANTS)}."})
    secret = client_secret or secrets.token_urlsafe(32)
    application = (
        application_model.objects.filter(client_id=client_id).first() if client_id else None
    )
    created = application is None
    if application is None:
        application = application_model(client_id=client_id) if client_id else application_model()
    account = None
    if grant == "client-credentials":
        if organisation is None or role not in CLINICAL_ROLES:
            raise ValidationError(
                {"role": "A partner system needs an organisation and a clinical or care role."}
            )
        username = f"api.{organisation.ods_code.lower()}.{slugify(name)}"[:150]
        account = staff_user_upsert(
            username=username, organisation=organisation, role=StaffRole(role),
            first_name="API", last_name=name[:150], password=None,
        )  # fmt: skip
        application.authorization_grant_type = application_model.GRANT_CLIENT_CREDENTIALS
        application.redirect_uris = ""
    else:
        if not redirect_uris.strip():
            raise ValidationError({"redirect_uris": "Give the application's redirect URIs."})
        application.authorization_grant_type = application_model.GRANT_AUTHORIZATION_CODE
        application.redirect_uris = redirect_uris.strip()
    application.name = name
    application.user = account
    application.client_type = application_model.CLIENT_CONFIDENTIAL
    application.skip_authorization = False
    # A given secret that already matches is left alone (its stored hash would change).
    reset = created or (client_secret and not check_password(secret, application.client_secret))
    if reset:
        application.client_secret = secret
    application.full_clean()
    application.save()
    audit_event_record(
        action=AuditAction.ADMIN_CHANGE,
        actor=AuditActor.system("manage.py"),
        detail={
            "model": "oauth2_provider.Application",
            "object": application.client_id,
            "change": "registered" if created else "updated",
            "secret_reset": bool(reset),
            "grant": grant,
        },
        source_ods=[organisation.ods_code] if organisation else [],
    )
    return ApiClientIssued(
        application.client_id, secret if created or client_secret else "", account
    )
