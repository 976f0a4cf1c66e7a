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
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.contrib.postgres.fields import ArrayField
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import connections
from django.db.models import F, Field, Q, QuerySet, TextField
from django.db.models.expressions import RawSQL
from django.db.models.fields.tuple_lookups import (  # type: ignore[import-untyped]
    Tuple,
    TupleGreaterThan,
)
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditContext, audit_event_record
from sharedrecord.access import (
    ODS_SYSTEM,
    REDACTION_ALSO_DROPS,
    Relationship,
    ViewPolicy,
    entries_visible,
)
from sharedrecord.dbrouter import read_alias
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
    total: int | None  # None: the search asked for no total (_total=none)
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
            None if total is None else int(total),
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


# The stored resource with our id and provenance in meta, as text made by PostgreSQL.
# Its subject (or patient) reference is pointed at the person's id here, so a
# client can follow it; the source's own reference names the source's id.
#
# SERVED_SQL, for a policy that withholds no element (nearly every read): text
# laid in front of the stored resource's served_body (migration 0021: the
# resource as text less id, meta and a subject or patient Reference, kept by
# PostgreSQL with every write), with the stored meta, subject and patient less
# what we set (served_parts) spliced in. No JSONB is built or turned into text
# per entry, so a page costs about the raw read of its rows. The keys are
# those RESOURCE_SQL sets, with the same values: the parity tests hold the two
# to the same JSON.
SERVED_SQL = """(
    '{{"id": "' || e.public_id::text || '", "meta": {{"source": '
    || to_json(%s || o.ods_code || CASE WHEN e.source_system = '' THEN ''
                                        ELSE '#' || replace(e.source_system, ' ', '%%20') END)::text
    || ', "lastUpdated": "'
    || to_char(e.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'
    || CASE WHEN coalesce(e.served_parts[1], '{{}}') = '{{}}' THEN '}}'
            ELSE ', ' || substr(e.served_parts[1], 2) END
    || CASE WHEN e.served_parts[2] IS NULL THEN ''
            ELSE ', "subject": {{"reference": "Patient/' || %s || '"'
                 || CASE WHEN e.served_parts[2] = '{{}}' THEN '}}'
                         ELSE ', ' || substr(e.served_parts[2], 2) END END
    || CASE WHEN e.served_parts[3] IS NULL THEN ''
            ELSE ', "patient": {{"reference": "Patient/' || %s || '"'
                 || CASE WHEN e.served_parts[3] = '{{}}' THEN '}}'
                         ELSE ', ' || substr(e.served_parts[3], 2) END END
    || CASE WHEN e.served_body = '{{}}' THEN '}}' ELSE ', ' || substr(e.served_body, 2) END
)"""
# RESOURCE_SQL, for a policy that withholds elements: the stored resource with
# those elements removed (access.ViewPolicy.withheld_elements, passed as
# {type: [element, ...]}), with the narrative and contained resources that may
# repeat them (access.REDACTION_ALSO_DROPS), and the REDACTED security label
# when any was there, so nobody reads it as complete. What we set is built as
# one small object and laid over the resource once (each `||` onto the whole
# resource copies it).
RESOURCE_SQL = """(
    {resource} || (jsonb_build_object(
        'id', e.public_id::text,
        'meta', coalesce(e.resource -> 'meta', '{{}}'::jsonb) || jsonb_build_object(
            'source', %s || o.ods_code
                || CASE WHEN e.source_system = '' THEN ''
                        ELSE '#' || replace(e.source_system, ' ', '%%20') END,
            'lastUpdated', to_char(e.updated_at AT TIME ZONE 'UTC',
                                   'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        ) {security}
    )
    || CASE WHEN jsonb_typeof(e.resource -> 'subject') = 'object' THEN jsonb_build_object(
        'subject', (e.resource -> 'subject') - 'reference'
                   || jsonb_build_object('reference', 'Patient/' || %s)) ELSE '{{}}' END
    || CASE WHEN jsonb_typeof(e.resource -> 'patient') = 'object' THEN jsonb_build_object(
        'patient', (e.resource -> 'patient') - 'reference'
                   || jsonb_build_object('reference', 'Patient/' || %s)) ELSE '{{}}' END)
)::text"""
REDACTED_SECURITY_SQL = """|| CASE WHEN e.resource ?| w.elements THEN jsonb_build_object(
            'security',
            coalesce(e.resource #> '{meta,security}', '[]'::jsonb) || %s::jsonb)
            ELSE '{}'::jsonb END"""

# The entry's source; and, for a policy that withholds elements, the ones
# withheld from each entry (parameters: withheld, also).
SOURCE_JOIN_SQL = "JOIN sharedrecord_organisation o ON o.id = e.source_org_id"
REDACTION_JOIN_SQL = """
CROSS JOIN LATERAL (
    SELECT ARRAY(SELECT jsonb_array_elements_text(%s::jsonb -> e.resource_type)) AS elements
) v
CROSS JOIN LATERAL (
    SELECT v.elements,
           CASE WHEN e.resource ?| v.elements THEN v.elements || %s::text[]
                ELSE v.elements END AS dropped
) w
"""

REDACTED_LABEL = [
    {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "REDACTED",
        "display": "redacted",
    }
]
PROVENANCE_AUTHOR = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
            "code": "author",
        }
    ]
}


@dataclass(frozen=True)
class _ResourceSql:
    """The served resource's expression and its joins, for one person and policy."""

    expression: str
    expression_params: list[Any]
    joins: str
    join_params: list[Any]
    stored: tuple[str, ...]  # the columns of sharedrecord_entry the expression reads


def _resource_sql(patient: Patient, policy: ViewPolicy) -> _ResourceSql:
    person = str(patient.public_id)
    if not policy.withheld_elements:
        return _ResourceSql(
            SERVED_SQL.format(),
            [ORD_URL, person, person],
            SOURCE_JOIN_SQL,
            [],
            ("served_body", "served_parts"),
        )
    withheld = {kind: sorted(names) for kind, names in policy.withheld_elements.items()}
    return _ResourceSql(
        RESOURCE_SQL.format(resource="(e.resource - w.dropped)", security=REDACTED_SECURITY_SQL),
        [ORD_URL, json.dumps(REDACTED_LABEL), person, person],
        SOURCE_JOIN_SQL + REDACTION_JOIN_SQL,
        [json.dumps(withheld), sorted(REDACTION_ALSO_DROPS)],
        ("resource",),
    )


def entries_served_text(
    patient: Patient, entry_ids: Collection[int], policy: ViewPolicy
) -> dict[int, str]:
    """Entries of one person as the read API serves them under a policy, by entry id, in one query.

    SERVED_SQL, or RESOURCE_SQL when the policy withholds elements. The caller
    has decided that the policy shows each entry (the entry read asks it; a
    notification's deliveries were decided when dispatched), and audits the
    disclosure.
    """
    resource = _resource_sql(patient, policy)
    sql = (
        f"SELECT e.id, {resource.expression} FROM sharedrecord_entry e {resource.joins}"  # noqa: S608 (constants)
        " WHERE e.patient_id = %s AND e.id = ANY(%s)"
    )
    params = [*resource.expression_params, *resource.join_params, patient.pk, list(entry_ids)]
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(sql, params)
        return {int(pk): str(text) for pk, text in cursor.fetchall()}


def entry_served_text(patient: Patient, entry_id: int, policy: ViewPolicy) -> str:
    """One entry as the read API serves it under a policy (entries_served_text).

    The caller has decided that the policy shows it, and audits the disclosure.
    """
    return entries_served_text(patient, [entry_id], policy)[entry_id]


# One page, in one statement: the keyset read (the caller's query, with the
# policy in its WHERE clause, served in order from entry_api_paging), then,
# for the page's rows, their Bundle entries joined into one text, the ids the
# audit event names, the sources, and where the next page starts. Nothing is
# parsed or built in Python per entry, so a page costs little more than
# PostgreSQL's own turning of the rows into text.
# What the keyset read hands on (PAGE_SQL reads the rows once, never again by id),
# with the stored columns the served resource is made of (_ResourceSql.stored).
PAGE_COLUMNS = (
    "received_at", "public_id", "resource_type", "updated_at", "source_system",
    "source_org_id",
)  # fmt: skip
# The generated columns of migration 0021, which the model does not name (so
# loading an Entry never reads them).
GENERATED_COLUMNS: dict[str, Field[Any, Any]] = {
    "served_body": TextField(),
    "served_parts": ArrayField(TextField()),
}
# The page is read in index order, never by sorting the person's rows: the
# planner, misjudging how many rows the policy's joins keep (it takes the
# organisations with an agreement for a small share), can otherwise choose to
# read every row after the cursor and sort them (on disk at 50,000 entries: a
# page of 5,000 took 248 ms instead of 48 ms, and every page again). SET LOCAL
# in the same simple query holds for that query's implicit transaction only
# (inside a caller's transaction, until it ends: later plans may change, never
# answers).
PAGE_PLAN_SQL = "SET LOCAL enable_sort = off;\n"
PAGE_SQL = """
WITH k AS ({keys}),
numbered AS (
    SELECT k.*, row_number() OVER (ORDER BY k.received_at, k.public_id) AS n FROM k
),
shown AS (
    SELECT e.n, e.public_id, e.received_at, e.resource_type, e.updated_at,
           o.ods_code, o.name AS org_name, e.source_system,
           {resource} AS text
    FROM numbered e {joins}
    WHERE e.n <= %s
)
SELECT
    (SELECT count(*) FROM numbered) AS fetched,
    count(*) AS shown,
    coalesce(string_agg(
        '{{"fullUrl":"' || %s || '/' || s.resource_type || '/' || s.public_id::text
        || '","resource":' || s.text || ',"search":{{"mode":"match"}}}}',
        ',' ORDER BY s.n), '') AS entries,
    {provenance} AS provenance,
    coalesce(array_agg(s.public_id::text ORDER BY s.n), '{{}}') AS ids,
    coalesce(array_agg(DISTINCT s.ods_code), '{{}}') AS sources,
    -- Where the next page starts, if one follows: the page's last row.
    (SELECT received_at FROM numbered WHERE n = %s) AS last_received,
    (SELECT public_id FROM numbered WHERE n = %s) AS last_id,
    {first_page}
FROM shown s
"""
# What only the first page asks, in its statement rather than a round trip of
# its own: whether anything is withheld (overall). (The total of a record longer
# than a page stays a query of its own: compiling it for every first page cost
# more than the round trip it would save on the few that need it.)
FIRST_PAGE_SQL = "EXISTS ({hidden}) AS withheld"
LATER_PAGE_SQL = "NULL AS withheld"
# The page's Provenance entries (`_revinclude=Provenance:target`), only when asked
# for: an aggregate's argument is built for every row, whatever CASE is around it.
PROVENANCE_SQL = """coalesce(string_agg(jsonb_build_object(
        'fullUrl', %s || '/Provenance/' || s.public_id::text || '-source',
        'resource', jsonb_build_object(
            'resourceType', 'Provenance',
            'id', s.public_id::text || '-source',
            'target', jsonb_build_array(jsonb_build_object(
                'reference', s.resource_type || '/' || s.public_id::text)),
            'recorded', to_char(s.updated_at AT TIME ZONE 'UTC',
                                'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'agent', jsonb_build_array(jsonb_build_object(
                'type', %s::jsonb,
                'who', jsonb_build_object(
                    'identifier', jsonb_build_object('system', %s, 'value', s.ods_code),
                    'display', s.org_name || CASE WHEN s.source_system = '' THEN ''
                                                  ELSE ' (' || s.source_system || ')' END)))),
        'search', jsonb_build_object('mode', 'include'))::text, ',' ORDER BY s.n), '')"""


@dataclass(frozen=True)
class Page:
    """One page of a search, its entries already Bundle entry JSON made by PostgreSQL."""

    patient: Patient
    entries: str  # the page's Bundle entries (mode "match"), comma-separated JSON
    provenance: str  # their Provenance entries (mode "include"), if asked for
    total: int | None  # None when the search asked for no total
    withheld: bool  # entries of the asked-for types were withheld for sensitivity
    next_cursor: Cursor | None


@dataclass(frozen=True)
class _PageRead:
    more: bool
    shown: int
    entries: str
    provenance: str
    ids: list[str]
    sources: list[str]
    last: tuple[datetime.datetime, uuid.UUID] | None
    withheld: bool | None  # the first page's answer (None on a later page)


def _page_read(
    *,
    keys: QuerySet[Entry, Any],
    count: int,
    patient: Patient,
    policy: ViewPolicy,
    base: str,
    provenance: bool,
    hidden: QuerySet[Entry, Any] | None,
) -> _PageRead:
    """The page (at most `count` entries of `keys`, which holds one more if more follow).

    With `hidden` (on a first page), the same statement says whether any of
    those entries exists.
    """
    resource = _resource_sql(patient, policy)
    generated = {
        name: RawSQL(f'"sharedrecord_entry"."{name}"', [], output_field=GENERATED_COLUMNS[name])  # noqa: S611 (constants)
        for name in resource.stored
        if name in GENERATED_COLUMNS
    }
    page = keys.annotate(**generated).values(*PAGE_COLUMNS, *resource.stored)[: count + 1]
    keys_sql, keys_params = page.query.sql_with_params()
    first_sql, first_params = LATER_PAGE_SQL, ()
    if hidden is not None:
        hidden_sql, first_params = hidden.values("pk")[:1].query.sql_with_params()
        first_sql = FIRST_PAGE_SQL.format(hidden=hidden_sql)
    sql = PAGE_SQL.format(
        keys=keys_sql,
        resource=resource.expression,
        joins=resource.joins,
        provenance=PROVENANCE_SQL if provenance else "''",
        first_page=first_sql,
    )
    params = [
        *keys_params,
        *resource.expression_params,
        *resource.join_params,
        count,
        json.dumps(base)[1:-1],  # JSON-escaped once, not per entry
        *([base, json.dumps(PROVENANCE_AUTHOR), ODS_SYSTEM] if provenance else []),
        count,
        count,
        *first_params,
    ]
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(PAGE_PLAN_SQL + sql, params)
        cursor.nextset()  # past the SET
        (fetched, shown, entries, prov, ids, sources, last_received, last_id,
         withheld) = cursor.fetchone()  # fmt: skip
    last = (last_received, last_id) if last_id is not None else None
    return _PageRead(fetched > count, shown, entries, prov, ids, sources, last, withheld)


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
    base: str,
    search: TypeSearch | None = None,
    since: datetime.datetime | None = None,
    provenance: bool = False,
    counted: bool = True,
    context: AuditContext | None = None,
) -> Page:
    """One page of the person's entries of these types that this caller may see; audited.

    `search` (a type search's filters) and `since` ($everything's _since)
    narrow it (entries_matching). The entries come as Bundle entry JSON
    whose fullUrl starts with `base`; with `provenance`, each has its
    source's Provenance too (`_revinclude=Provenance:target`).

    Stable paging: entries come in arrival order (received_at, then public
    id) up to the first page's snapshot time, so an entry that arrives while
    a client pages is left for its next `_since` read, and an updated entry
    keeps its place: no duplicates, no gaps. The total and the "withheld"
    flag are the first page's, carried in the cursor; a first page that holds
    everything counts itself, so only a record longer than a page is counted,
    and not at all without `counted` (_total=none).
    Raises PatientNotFound (after an audited denial) for a person the caller
    may not see. Side effects: one audit event (api-read) listing every
    entry returned, flagged for review for emergency access or when the
    feeds show no relationship between the caller's organisation and the
    person; it commits before the page is returned.
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
    if cursor is not None:
        # (received_at, public_id) > the cursor's, as one row comparison the
        # index serves in order (an OR of the two makes PostgreSQL sort). Django
        # made it for composite keys in an undocumented module: the paging
        # tests are what will tell us if an upgrade moves it.
        after = TupleGreaterThan(
            Tuple(F("received_at"), F("public_id")), (cursor.received_at, cursor.public_id)
        )
        matching = matching.filter(after)
    keys = matching.select_related(None).order_by("received_at", "public_id")
    # The first page also asks whether anything is withheld (overall: never
    # which type or section it is in).
    read = _page_read(
        keys=keys,
        count=count, patient=patient, policy=policy, base=base, provenance=provenance,
        hidden=visible.hidden if cursor is None else None,
    )  # fmt: skip
    if cursor is not None:
        total, withheld = cursor.total, cursor.withheld
    else:
        total = (
            read.shown if not read.more and count > 0 else (matching.count() if counted else None)
        )
        withheld = bool(read.withheld)
    next_cursor = None
    if read.more and read.last is not None:  # _count=0 asks for the total alone
        next_cursor = Cursor(as_of, read.last[0], read.last[1], total, withheld, query)
    # The event commits on its own (no savepoint inside an outer block): its
    # commit is the only one a read needs, and nothing is returned if it fails.
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
            entries=read.ids,
            withheld=withheld,
        ),
        source_ods=read.sources,
        context=context,
    )
    return Page(patient, read.entries, read.provenance, total, withheld, next_cursor)


def _entry_visible(
    *, caller: ApiCaller, basis: ApiBasis, entry: Entry
) -> tuple[ViewPolicy, list[Relationship], str] | None:
    """The caller's policy and relationships, and the entry's source ODS code, if it is shown."""
    policy, relationships = api_policy(caller=caller, basis=basis, patient=entry.patient)
    source = (
        entries_visible(patient=entry.patient, policy=policy)
        .entries.filter(pk=entry.pk)
        .values_list("source_org__ods_code", flat=True)
        .first()
    )
    return (policy, relationships, source) if source is not None else None


def api_entry_read(
    *,
    caller: ApiCaller,
    basis: ApiBasis,
    resource_type: str,
    entry_id: str,
    context: AuditContext | None = None,
) -> str:
    """One entry by id as FHIR JSON, if this caller may see it; PatientNotFound alike otherwise.

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
    policy, relationships, source = found
    # The event commits on its own (no savepoint inside an outer block): its
    # commit is the only one a read needs, and nothing is returned if it fails.
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
        source_ods=[source],
        context=context,
    )
    return entry_served_text(entry.patient, entry.pk, policy)
