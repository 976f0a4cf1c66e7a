"""Audited reads of a record's entries for the FHIR R4 read API: pages and single entries.

The same access policy as the record pages (access.py). Each function writes
one audit event (STYLE.md section 4) before anything is returned: the person
read, every entry id returned, the caller's client and purpose of use. If the
audit write fails, nothing is returned.

The typed search values (fhirapi/params.py) become queries here, and only
here: the HTTP layer never builds one. Resources leave as text from
PostgreSQL (PITFALLS: turning JSONB back into text is most of the cost of
reading a big record); only their `id` and `meta` are changed, in SQL, and
nothing here parses them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from django.core import signing
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditContext, audit_event_record
from sharedrecord.access import (
    REDACTION_ALSO_DROPS,
    Relationship,
    ViewPolicy,
    entries_visible,
)
from sharedrecord.exceptions import PatientNotFound
from sharedrecord.fhir_read import ORD_URL, ApiBasis, ApiCaller, api_event_detail, api_policy
from sharedrecord.fhirapi.params import DateParam, Token, TypeSearch
from sharedrecord.models import Entry, Patient, is_uuid
from sharedrecord.search import (
    audit_subject_of,
    patient_or_denied,
)

# ------------------------------------------------------------------ queries from typed values


def _date_filter(field: str, values: tuple[DateParam, ...]) -> Q:
    """Each value narrows the search (repeat the parameter for a range: ge...&le...)."""
    where = Q()
    for value in values:
        start, end = value.start, value.end
        where &= {
            "eq": Q(**{f"{field}__gte": start, f"{field}__lt": end}),
            "ne": ~Q(**{f"{field}__gte": start, f"{field}__lt": end}),
            "gt": Q(**{f"{field}__gte": end}),
            "sa": Q(**{f"{field}__gte": end}),
            "ge": Q(**{f"{field}__gte": start}),
            "lt": Q(**{f"{field}__lt": start}),
            "eb": Q(**{f"{field}__lt": start}),
            "le": Q(**{f"{field}__lt": end}),
        }[value.prefix]
    return where


T = TypeVar("T")


def _any_of(values: tuple[tuple[T, ...], ...], one: Callable[[T], Q]) -> Q:
    """Repeated parameters AND together; the values inside one OR together."""
    where = Q()
    for alternatives in values:
        either = Q()
        for value in alternatives:
            either |= one(value)
        where &= either
    return where


def _code(token: Token) -> Q:
    where = Q(code_system=token.system) if token.system else Q()
    return where & Q(code=token.code) if token.code else where


def _category(token: Token) -> Q:
    coding = {"system": token.system} if token.system else {}
    if token.code:
        coding["code"] = token.code
    # CodeableConcept categories (most types) and AllergyIntolerance's plain codes.
    where = Q(resource__category__contains=[{"coding": [coding]}])
    if token.code:
        where |= Q(resource__category__contains=[token.code])
    return where


def entries_matching(*, search: TypeSearch | None, since: datetime.datetime | None) -> Q:
    """The entries a type search's filters (or $everything's _since) ask for, as a query."""
    where = Q() if since is None else Q(updated_at__gte=since)
    if search is None:
        return where
    return (
        where
        & _date_filter("effective_at", search.date)
        & _date_filter("updated_at", search.last_updated)
        & _any_of(search.code, _code)
        & _any_of(search.status, lambda s: Q(status=s))
        & _any_of(search.category, _category)
    )


# ------------------------------------------------------------------ the entries of a record


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts, in arrival order, within the first page's snapshot."""

    as_of: datetime.datetime
    received_at: datetime.datetime
    public_id: uuid.UUID
    total: int
    withheld: bool
    query: str  # a hash of the search it belongs to: a cursor is not reused for another

    def token(self) -> str:
        return signing.dumps(
            [
                self.as_of.isoformat(),
                self.received_at.isoformat(),
                str(self.public_id),
                self.total,
                self.withheld,
                self.query,
            ],
            salt=CURSOR_SALT,
            compress=True,
        )


CURSOR_SALT = "sharedrecord.fhir.cursor"


def cursor_read(token: str, *, query: str) -> Cursor:
    """The cursor a next link carries; ValidationError if it was altered or is another search's."""
    try:
        as_of, received_at, public_id, total, withheld, for_query = signing.loads(
            token, salt=CURSOR_SALT
        )
        cursor = Cursor(
            datetime.datetime.fromisoformat(as_of),
            datetime.datetime.fromisoformat(received_at),
            uuid.UUID(public_id),
            int(total),
            bool(withheld),
            str(for_query),
        )
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise ValidationError("The _cursor parameter is not one this server gave out.") from exc
    if cursor.query != query:
        raise ValidationError("The _cursor parameter belongs to another search.")
    return cursor


def query_key(params: Iterable[tuple[str, str]]) -> str:
    """A short hash of a search's parameters (less the cursor and page size)."""
    kept = sorted((k, v) for k, v in params if k not in ("_cursor", "_count"))
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Row:
    """One entry of a page: its text is the stored resource with our id and meta."""

    public_id: uuid.UUID
    resource_type: str
    updated_at: datetime.datetime
    source_ods: str
    source_name: str
    source_system: str
    text: str


@dataclass(frozen=True)
class Page:
    patient: Patient
    rows: list[Row]
    total: int
    withheld: bool  # entries of the asked-for types were withheld for sensitivity
    next_cursor: Cursor | None


# The stored resource with our id and provenance in meta, turned to text by PostgreSQL.
# Its subject (or patient) reference is pointed at the person's id here, so a
# client can follow it; the source's own reference names the source's id.
# Elements the caller's policy withholds (access.ViewPolicy.withheld_elements,
# passed as {type: [element, ...]}) are removed, with the narrative and contained
# resources that may repeat them (access.REDACTION_ALSO_DROPS), and the resource
# then carries the REDACTED security label, so nobody reads it as complete.
RESOURCE_TEXT_SQL = """
SELECT e.public_id, (
    (e.resource - w.dropped) || jsonb_build_object(
        'id', e.public_id::text,
        'meta', coalesce(e.resource -> 'meta', '{}'::jsonb) || jsonb_build_object(
            'source', %(ord)s || o.ods_code
                || CASE WHEN e.source_system = '' THEN ''
                        ELSE '#' || replace(e.source_system, ' ', '%%20') END,
            'lastUpdated', to_char(e.updated_at AT TIME ZONE 'UTC',
                                   'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        ) || CASE WHEN e.resource ?| w.elements THEN jsonb_build_object(
            'security',
            coalesce(e.resource #> '{meta,security}', '[]'::jsonb) || %(redacted)s::jsonb)
            ELSE '{}'::jsonb END
    )
    || CASE WHEN jsonb_typeof(e.resource -> 'subject') = 'object' THEN jsonb_build_object(
        'subject', (e.resource -> 'subject') - 'reference'
                   || jsonb_build_object('reference', 'Patient/' || %(person)s)) ELSE '{}' END
    || CASE WHEN jsonb_typeof(e.resource -> 'patient') = 'object' THEN jsonb_build_object(
        'patient', (e.resource -> 'patient') - 'reference'
                   || jsonb_build_object('reference', 'Patient/' || %(person)s)) ELSE '{}' END
)::text
FROM sharedrecord_entry e JOIN sharedrecord_organisation o ON o.id = e.source_org_id
CROSS JOIN LATERAL (
    SELECT ARRAY(SELECT jsonb_array_elements_text(%(withheld)s::jsonb -> e.resource_type))
        AS elements
) v
CROSS JOIN LATERAL (
    SELECT v.elements,
           CASE WHEN e.resource ?| v.elements THEN v.elements || %(also)s::text[]
                ELSE v.elements END AS dropped
) w
WHERE e.patient_id = %(patient)s AND e.id = ANY(%(ids)s)
"""
REDACTED_LABEL = [
    {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "REDACTED",
        "display": "redacted",
    }
]


def _texts(patient: Patient, ids: list[int], policy: ViewPolicy) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    withheld = {kind: sorted(names) for kind, names in policy.withheld_elements.items()}
    with connection.cursor() as cursor:
        cursor.execute(
            RESOURCE_TEXT_SQL,
            {
                "ord": ORD_URL,
                "redacted": json.dumps(REDACTED_LABEL),
                "person": str(patient.public_id),
                "withheld": json.dumps(withheld),
                "also": sorted(REDACTION_ALSO_DROPS),
                "patient": patient.pk,
                "ids": ids,
            },
        )
        return {public_id: text for public_id, text in cursor.fetchall()}


def api_entries_page(
    *,
    caller: ApiCaller,
    basis: ApiBasis,
    patient_id: str,
    types: frozenset[str],
    count: int,
    cursor: Cursor | None,
    query: str,
    interaction: str,
    search: TypeSearch | None = None,
    since: datetime.datetime | None = None,
    context: AuditContext | None = None,
) -> Page:
    """One page of the person's entries of these types that this caller may see; audited.

    `search` (a type search's filters) and `since` ($everything's _since)
    narrow it (entries_matching).

    Stable paging: entries come in arrival order (received_at, then public
    id) up to the first page's snapshot time, so an entry that arrives while
    a client pages is left for its next `_since` read, and an updated entry
    keeps its place: no duplicates, no gaps. The total and the "withheld"
    flag are the first page's, carried in the cursor.
    Raises PatientNotFound (after an audited denial) for a person the caller
    may not see. Side effects: one audit event (api-read) listing every
    entry returned, flagged for review for emergency access or when the
    feeds show no relationship between the caller's organisation and the
    person.
    """
    actor = caller.actor()
    patient = patient_or_denied(
        viewer=caller.user,
        patient_id=patient_id,
        context=context,
        asked=f"api-{interaction}",
        actor=actor,
    )
    policy, relationships = api_policy(caller=caller, basis=basis, patient=patient)
    visible = entries_visible(patient=patient, policy=policy)
    wanted = Q(resource_type__in=sorted(types)) & entries_matching(search=search, since=since)
    as_of = cursor.as_of if cursor else timezone.now()
    matching = visible.entries.filter(wanted, received_at__lte=as_of)
    if cursor is None:
        total = matching.count()
        # Anything withheld, overall: never which type or section it is in.
        withheld = visible.hidden.exists()
    else:
        total, withheld = cursor.total, cursor.withheld
        matching = matching.filter(
            Q(received_at__gt=cursor.received_at)
            | Q(received_at=cursor.received_at, public_id__gt=cursor.public_id)
        )
    keys = list(
        matching.order_by("received_at", "public_id").values_list(
            "id", "public_id", "received_at", "resource_type", "updated_at",
            "source_org__ods_code", "source_org__name", "source_system",
        )[: count + 1]
    )  # fmt: skip
    more = len(keys) > count
    keys = keys[:count]
    next_cursor = None
    if more and keys:  # _count=0 asks for the total alone: no page follows
        last = keys[-1]
        next_cursor = Cursor(as_of, last[2], last[1], total, withheld, query)
    with transaction.atomic():
        audit_event_record(
            action=AuditAction.API_READ,
            actor=actor,
            subject=audit_subject_of(patient),
            purpose=basis.purpose,
            detail=api_event_detail(
                caller=caller,
                basis=basis,
                interaction=interaction,
                relationships=relationships,
                entries=[str(k[1]) for k in keys],
                withheld=withheld,
            ),
            source_ods={k[5] for k in keys},
            context=context,
        )
    texts = _texts(patient, [k[0] for k in keys], policy)
    rows = [Row(k[1], k[3], k[4], k[5], k[6], k[7], texts[k[1]]) for k in keys if k[1] in texts]
    return Page(patient, rows, total, withheld, next_cursor)


def _entry_visible(
    *, caller: ApiCaller, basis: ApiBasis, entry: Entry
) -> tuple[ViewPolicy, list[Relationship], tuple[str, str]] | None:
    """The caller's policy and relationships, and the entry's source (ODS code, name), if shown."""
    policy, relationships = api_policy(caller=caller, basis=basis, patient=entry.patient)
    shown = (
        entries_visible(patient=entry.patient, policy=policy)
        .entries.filter(pk=entry.pk)
        .values_list("source_org__ods_code", "source_org__name")
        .first()
    )
    return (policy, relationships, shown) if shown is not None else None


def api_entry_read(
    *,
    caller: ApiCaller,
    basis: ApiBasis,
    resource_type: str,
    entry_id: str,
    context: AuditContext | None = None,
) -> Row:
    """One entry by id, if this caller may see it; PatientNotFound alike otherwise.

    Side effects: one audit event (api-read), or an audited denial that names
    only the asked-for id.
    """
    actor = caller.actor()
    entry = (
        Entry.objects.filter(public_id=entry_id, resource_type=resource_type)
        .select_related("patient")
        .first()
        if is_uuid(entry_id)
        else None
    )
    found = _entry_visible(caller=caller, basis=basis, entry=entry) if entry else None
    if entry is None or found is None:
        audit_event_record(
            action=AuditAction.ACCESS_DENIED,
            actor=actor,
            outcome=AuditOutcome.DENIED,
            detail={"asked": "api-read", "entry": str(entry_id)[:40], "reason": "not-visible"},
            context=context,
        )
        raise PatientNotFound(f"No {resource_type} with this id is available to you.")
    policy, relationships, shown = found
    with transaction.atomic():
        audit_event_record(
            action=AuditAction.API_READ,
            actor=actor,
            subject=audit_subject_of(entry.patient),
            purpose=basis.purpose,
            detail=api_event_detail(
                caller=caller,
                basis=basis,
                interaction="read",
                relationships=relationships,
                type=resource_type,
                entries=[str(entry.public_id)],
            ),
            source_ods=[shown[0]],
            context=context,
        )
    text = _texts(entry.patient, [entry.pk], policy)[entry.public_id]
    return Row(
        entry.public_id, resource_type, entry.updated_at, shown[0], shown[1],
        entry.source_system, text,
    )  # fmt: skip
