"""Showing a record to a member of staff: its summary, one section, one document.

Each view is an audited read (STYLE.md section 4) of what access.py lets the
viewer see: CombinedRecord and Summary are what the record pages render.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone
from django.utils.timesince import timesince

from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditContext, audit_event_record
from sharedrecord.access import (
    ViewPolicy,
    VisibleEntries,
    access_basis_current,
    entries_visible,
    entry_is_sensitive,
    view_policy,
)
from sharedrecord.auditing import actor_for
from sharedrecord.dbrouter import read_alias
from sharedrecord.exceptions import (
    AccessBasisRequired,
    PatientNotFound,
    SectionNotAvailable,
    SectionPageNotFound,
)
from sharedrecord.models import (
    AccessBasis,
    Entry,
    Organisation,
    Patient,
    RecordChange,
    RecordSection,
    User,
    is_uuid,
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
from sharedrecord.presentation.prsb import HEADINGS, AboutLine, about_the_person, prsb_item_of
from sharedrecord.presentation.trends import Trend, trends_of
from sharedrecord.presenting import Attachment, attachment_of
from sharedrecord.search import audit_subject_of, patient_or_denied


@dataclass(frozen=True)
class SourceRow:
    """One connected organisation, for the "where this record comes from" panel."""

    name: str
    ods_code: str
    kind: str
    last_feed_at: datetime.datetime | None
    items_for_person: int
    latest_for_person: datetime.datetime | None
    # Silent past its expected interval (Organisation.feed_is_late): its data may be stale.
    late: bool = False
    expected_every: str = ""  # "1 day", its expected interval in words
    last_received_ago: str = ""  # "3 days", for the stale-data banner


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
    # The person's own Patient (the banner's source) and their related people: read for
    # "About the person" (PRSB, presentation/prsb.py), not listed on their own.
    person: list[ShownEntry] = field(default_factory=list)
    contacts: list[ShownEntry] = field(default_factory=list)
    about: list[AboutLine] = field(default_factory=list)
    # How many items each list leaves out past its limit (it shows its latest few).
    beyond: dict[str, int] = field(default_factory=dict)

    def shown(self) -> list[ShownEntry]:
        """Every item whose content the summary shows (for the audit)."""
        about = {line.entry for line in self.about}
        return [
            *self.alerts, *self.allergies, *self.no_known_allergies, *self.medications,
            *self.problems, *self.encounters, *self.results, *self.appointments,
            *self.care_plans, *(i for i in [*self.person, *self.contacts] if i.public_id in about),
        ]  # fmt: skip

    @property
    def latest_results(self) -> list[ShownEntry]:
        """The newest result of each test: its earlier ones are in its small trend."""
        seen: set[tuple[str, str]] = set()
        latest = []
        for item in self.results:  # newest first
            key = (item.resource_type, item.code or item.public_id)
            if key not in seen:
                seen.add(key)
                latest.append(item)
        return latest

    @property
    def other_care_plans(self) -> list[ShownEntry]:
        """The care plans "About the person" does not already show under a PRSB heading."""
        about = {line.entry for line in self.about}
        return [p for p in self.care_plans if p.public_id not in about]

    @property
    def no_known_statements(self) -> list[tuple[str, str, ShownEntry]]:
        """(what the code says, what it leaves open, the item) for each "no known …" entry."""
        return [(*NO_KNOWN_ALLERGIES[item.code], item) for item in self.no_known_allergies]

    def blocks(self) -> list[tuple[str, str, list[ShownEntry], str, int]]:
        """(section, heading, items, what to say when empty, how many in all), in page order."""
        return [*self.first_column(), *self.second_column()]

    def _total(self, part: str, items: list[ShownEntry]) -> int:
        """The list's items in all, for "see all N": those shown and those past its limit."""
        return len(items) + self.beyond.get(part, 0)

    def first_column(self) -> list[tuple[str, str, list[ShownEntry], str, int]]:
        """What to check before treating: allergies, alerts, medicines, problems."""
        return [
            ("allergies", "Allergies and adverse reactions", self.allergies, "",
             len(self.allergies)),
            ("alerts", "Alerts and flags", self.alerts, "No alerts recorded.", len(self.alerts)),
            ("medications", "Current medications", self.medications,
             "No current medications shared.", self._total("medications", self.medications)),
            ("problems", "Active problems", self.problems, "No active problems shared.",
             self._total("problems", self.problems)),
        ]  # fmt: skip

    def second_column(self) -> list[tuple[str, str, list[ShownEntry], str, int]]:
        """What has happened and what comes next: results, encounters, appointments, plans."""
        return [
            ("results", "Latest results", self.latest_results, "No results shared.",
             self._total("results", self.results)),
            ("encounters", "Recent encounters", self.encounters, "No encounters shared.",
             self._total("encounters", self.encounters)),
            ("appointments", "Upcoming appointments", self.appointments,
             "No upcoming appointments shared.", self._total("appointments", self.appointments)),
            ("care-plans", "Other care plans", self.other_care_plans,
             "No other care plans shared.", len(self.other_care_plans)),
        ]  # fmt: skip


# Alerts the banner names on their own, wherever they are recorded (an alert, a care
# plan): by SNOMED CT code, or by the words senders use. Each is a reason to stop and
# read before treating the person.
BANNER_FLAGS: tuple[tuple[str, frozenset[str], tuple[str, ...]], ...] = (
    ("DNACPR", frozenset({"304253006", "450476008", "1066391000000105", "dnr"}),
     ("dnacpr", "do not attempt cardiopulmonary", "not for resuscitation")),
    ("ReSPECT plan", frozenset({"1108161000000109"}), ("respect",)),
    ("End of life care", frozenset({"736373009", "395104009"}), ("end of life", "palliative")),
    ("Safeguarding", frozenset({"1010601000000100"}), ("safeguarding", "child protection")),
)  # fmt: skip
BANNER_ROWS = 40


@dataclass(frozen=True)
class Banner:
    """What the patient banner says of the record, from what this viewer may see.

    `allergies_known` is None when the viewer's role does not include allergies.
    """

    allergies: list[str]
    no_known_allergies: list[str]
    allergies_known: bool | None
    alerts: list[ShownEntry]
    flags: list[str]

    @property
    def entries(self) -> list[str]:
        """The items whose words the banner shows (for the audit)."""
        return [a.public_id for a in self.alerts]


def _flags_of(items: list[ShownEntry]) -> list[str]:
    found = []
    for name, codes, words in BANNER_FLAGS:
        for item in items:
            lowered = item.title.lower()
            if codes & {c.rpartition("|")[2] for c in item.codes} or any(
                w in lowered.split() or (" " in w and w in lowered) for w in words
            ):
                found.append(name)
                break
    return found


def _banner_of(shown: list[ShownEntry], policy: ViewPolicy) -> Banner:
    """The banner from the viewer's shown allergies, active alerts and active care plans."""
    allergies = [
        s for s in shown if s.section == RecordSection.ALLERGIES
        and s.verification not in NOT_A_PROBLEM and s.status in ("", *ACTIVE_CLINICAL)
    ]  # fmt: skip
    alerts = [s for s in shown if s.section == RecordSection.ALERTS and s.current]
    return Banner(
        allergies=[a.title for a in allergies if a.code not in NO_KNOWN_ALLERGY_CODES],
        no_known_allergies=[
            NO_KNOWN_ALLERGIES[a.code][0] for a in allergies if a.code in NO_KNOWN_ALLERGY_CODES
        ],
        allergies_known=(
            None if not policy.may_see_section(RecordSection.ALLERGIES) else bool(allergies)
        ),
        alerts=alerts,
        flags=_flags_of([s for s in shown if s.current and s.section != RecordSection.ALLERGIES]),
    )


def _banner(patient: Patient, policy: ViewPolicy) -> Banner:
    """The banner's allergy status, current alerts and flags: one query, whatever the record.

    Reads the viewer's visible allergies, active alerts and active care plans
    (newest first, at most BANNER_ROWS); entered-in-error items say nothing.
    The summary page has these already and builds its banner from them.
    """
    in_sections = frozenset(
        {RecordSection.ALLERGIES.value, RecordSection.ALERTS.value, RecordSection.CARE_PLANS.value}
    )
    rows = (
        entries_visible(patient=patient, policy=policy, sections=in_sections)
        .entries.filter(Q(section=RecordSection.ALLERGIES) | Q(status="active"))
        .exclude(status="entered-in-error")
        .order_by("-effective_at", "-id")[:BANNER_ROWS]
    )
    return _banner_of(_shown(rows, policy), policy)


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
    page: int = 1  # of a section, newest first
    pages: int = 1
    banner: Banner | None = None
    # A section's page split into what is current and what is past (medicines, problems).
    groups: list[tuple[str, list[ShownEntry], str]] | None = None
    cumulative: Cumulative | None = None
    filters: ResultFilters | None = None
    tests: list[tuple[str, str]] | None = None  # (code, name) of the tests on the page

    @property
    def first_shown(self) -> int:
        """The position of the page's first item in the section (1 for the newest)."""
        return (self.page - 1) * SECTION_PAGE_SIZE + 1

    @property
    def last_shown(self) -> int:
        """The position of the page's last item in the section."""
        return self.first_shown + len(self.items or []) - 1


SECTION_PAGE_SIZE = 100
SUMMARY_RECENT = 5  # results, encounters, appointments: the latest (or next) few
SUMMARY_CURRENT = 6  # current medicines and active problems: the latest few, then "see all"
SUMMARY_CONTACTS = 10  # related people read for next of kin, carers and attorneys
CUMULATIVE_COLUMNS = 8  # dates across a results table, newest first


@dataclass(frozen=True)
class ResultFilters:
    """What a results page was narrowed to: one test (its code), and a date range (UK days)."""

    code: str = ""
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None

    @property
    def any(self) -> bool:
        return bool(self.code or self.date_from or self.date_to)

    def apply(self, entries: QuerySet[Entry]) -> QuerySet[Entry]:
        if self.code:
            entries = entries.filter(code=self.code)
        if self.date_from:
            entries = entries.filter(effective_at__date__gte=self.date_from)
        if self.date_to:
            entries = entries.filter(effective_at__date__lte=self.date_to)
        return entries

    def audit_detail(self) -> dict[str, str]:
        return {
            k: v for k, v in (
                ("code", self.code),
                ("from", self.date_from.isoformat() if self.date_from else ""),
                ("to", self.date_to.isoformat() if self.date_to else ""),
            ) if v
        }  # fmt: skip


@dataclass(frozen=True)
class CumulativeRow:
    """One test across the dates of a results page: the value on each date, or None."""

    title: str
    unit: str
    cells: list[ShownEntry | None]


@dataclass(frozen=True)
class Cumulative:
    """Results grouped by test (rows) across dates (columns, newest first)."""

    dates: list[str]
    rows: list[CumulativeRow]


def cumulative_of(items: list[ShownEntry]) -> Cumulative | None:
    """The page's results with a value, by test and date (the newest CUMULATIVE_COLUMNS dates).

    Each cell is the newest result of that test on that day; a test with no
    result on a date has an empty cell. None when fewer than two results.
    """
    results = [i for i in items if i.resource_type == "Observation" and i.result and i.when_shown]
    if len(results) < 2:
        return None
    day_of = {i.public_id: i.when_shown.split(" ")[0:3] for i in results}
    days: list[str] = []
    for item in results:  # newest first already
        day = " ".join(day_of[item.public_id])
        if day not in days:
            days.append(day)
    days = days[:CUMULATIVE_COLUMNS]
    by_test: dict[tuple[str, str], dict[str, ShownEntry]] = {}
    for item in results:
        day = " ".join(day_of[item.public_id])
        if day in days:
            by_test.setdefault((item.code or item.title, item.title), {}).setdefault(day, item)
    rows = [
        CumulativeRow(title, next(iter(cells.values())).unit, [cells.get(d) for d in days])
        for (_, title), cells in sorted(by_test.items(), key=lambda kv: kv[0][1].lower())
    ]
    return Cumulative(days, rows)


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
        codes=entry.codes,
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


def _visible_in(patient: Patient, policy: ViewPolicy, section: str) -> QuerySet[Entry]:
    """The entries of one section the viewer may see: the policy for that section alone.

    The same rows as everything visible, filtered to the section; a statement
    under the one section's policy is simpler to plan (access.entries_visible).
    """
    return entries_visible(patient=patient, policy=policy, sections=frozenset({section})).entries


@dataclass(frozen=True)
class _Part:
    """One list of the summary: which entries it holds, in what order, how many.

    `where` is SQL over the entry's own columns (those of _LISTED), with a %s
    for each of `params` (and %% for a literal %); `order` names columns, "-"
    for newest first.
    """

    name: str
    section: RecordSection
    where: str = "TRUE"
    params: tuple[Any, ...] = ()
    order: tuple[str, ...] = ("-effective_at", "-id")
    limit: int | None = None


def _summary_parts(now: datetime.datetime, person_source: str = "") -> list[_Part]:
    """What the summary lists as current: each filter says what "current" means.

    An alert whose period has ended, a problem whose diagnosis was refuted and
    a medicine or plan that is complete are not current; they stay in their
    sections, with their qualifiers.
    """
    return [
        _Part("alerts", RecordSection.ALERTS, "status = 'active'"),
        _Part("allergies", RecordSection.ALLERGIES),
        _Part(
            "medications", RecordSection.MEDICATIONS, "status = ANY(%s)",
            (sorted(CURRENT_MEDICATION),), limit=SUMMARY_CURRENT,
        ),
        _Part(
            "problems", RecordSection.PROBLEMS, "status = ANY(%s)", (sorted(ACTIVE_CLINICAL),),
            limit=SUMMARY_CURRENT,
        ),
        _Part(
            "encounters", RecordSection.ENCOUNTERS, "effective_at <= %s", (now,),
            limit=SUMMARY_RECENT,
        ),
        _Part(
            "results", RecordSection.RESULTS, "resource_type = ANY(%s)",
            (["DiagnosticReport", "Observation"],), limit=SUMMARY_RECENT,
        ),
        _Part(
            "appointments", RecordSection.APPOINTMENTS, "effective_at >= %s AND status = ANY(%s)",
            (now, sorted(UPCOMING_APPOINTMENT)), order=("effective_at", "id"),
            limit=SUMMARY_RECENT,
        ),
        _Part("care_plans", RecordSection.CARE_PLANS, "status = 'active'"),
        # The Patient the banner's demographics come from: phone, e-mail, language (PRSB).
        _Part(
            "person", RecordSection.DEMOGRAPHICS,
            "resource_type = 'Patient' AND source_org_id IN"
            " (SELECT id FROM sharedrecord_organisation WHERE ods_code = %s)" if person_source
            else "resource_type = 'Patient'",
            (person_source,) if person_source else (),
            order=("-updated_at", "-id"), limit=1,
        ),
        _Part(
            "contacts", RecordSection.CONTACTS, "resource_type = 'RelatedPerson'",
            order=("-updated_at", "-id"), limit=SUMMARY_CONTACTS,
        ),
    ]  # fmt: skip


# The columns the summary's lists choose by (_Part.where and .order).
_LISTED = (
    "id",
    "section",
    "status",
    "resource_type",
    "effective_at",
    "updated_at",
    "source_org_id",
)


# An entry's own columns (not the generated served text, which the model does not name).
_ENTRY_COLUMNS = ", ".join(f'e."{field.column}"' for field in Entry._meta.concrete_fields)


def _summary_chosen(
    patient: Patient, policy: ViewPolicy, parts: list[_Part]
) -> list[tuple[Entry, str, int]]:
    """Each list's entries with the list they are in and its total, in one statement.

    `total` is the list's length before its limit, for a limited list (0 for
    the others, which are read whole), so "see all N" costs no query of its own.

    1. The policy is compiled by the ORM once per view of the record the lists
       read from (access.entries_visible): "care" for the clinical sections,
       without the demographics rule, which is far simpler to plan; "person"
       for the person's own Patient entry. Each is a CTE that PostgreSQL
       inlines (NOT MATERIALIZED) into the branches that read it.
    2. One branch per list, ordered and limited, served by the entry_section
       index, written here as SQL: building and compiling ten querysets, each
       with the whole policy, took the ORM 15 to 25 ms a summary, more than
       PostgreSQL takes to answer them (bench/view.py, round 5).
    3. A limited list's total is a window over its rows before the limit.
    4. The chosen entries' rows are read by the same statement, so they are
       the rows the policy passed, as they were when it did (read again under
       the policy by a second statement, they cost its compiling and planning
       again: bench/view.py, round 6). Their sources come in one more query.
    """
    if not parts:
        return []
    demographics = RecordSection.DEMOGRAPHICS.value
    wanted = frozenset(p.section.value for p in parts)
    # Each CTE: the policy for the sections its lists read from.
    views = {"person": wanted & {demographics}, "care": wanted - {demographics}}
    database = read_alias()
    ctes: list[str] = []
    params: list[Any] = []
    for name, sections in views.items():
        if sections:
            entries = (
                entries_visible(patient=patient, policy=policy, sections=sections)
                .entries.exclude(status="entered-in-error")
                .order_by()
                .values_list(*_LISTED)
            )
            sql, more = entries.query.get_compiler(using=database).as_sql()
            # The CTE's columns keep the names the SELECT gives them ("id", ...).
            ctes.append(f"{name} AS NOT MATERIALIZED ({sql})")
            params.extend(more)
    branches: list[str] = []
    for part in parts:
        view = "person" if part.section == demographics else "care"
        order = ", ".join(f"{o[1:]} DESC" if o.startswith("-") else o for o in part.order)
        total = "count(*) OVER ()" if part.limit else "0"
        limit = f" LIMIT {int(part.limit)}" if part.limit else ""
        branches.append(
            f"(SELECT id, %s AS part, {total} AS total FROM {view}"  # noqa: S608 (constants)
            f" WHERE section = %s AND ({part.where}) ORDER BY {order}{limit})"
        )
        params.extend([part.name, part.section.value, *part.params])
    chosen = "\nUNION ALL\n".join(branches)
    sql = (
        f"WITH {', '.join(ctes)},\nchosen AS ({chosen})\n"
        f"SELECT {_ENTRY_COLUMNS}, chosen.part, chosen.total"
        f" FROM chosen JOIN {Entry._meta.db_table} e"
        " ON e.id = chosen.id AND e.patient_id = %s"  # one person's: one shard under Citus
    )
    read = Entry.objects.db_manager(database).raw(sql, [*params, patient.pk])
    read = read.prefetch_related("source_org")
    # The columns the model does not name come as attributes of each entry.
    return [(e, str(vars(e)["part"]), int(vars(e)["total"])) for e in read]


def _summary(patient: Patient, visible: QuerySet[Entry], policy: ViewPolicy) -> Summary:
    """The summary's lists, read in two queries whatever the record's size.

    The entries and the list each is in come from one statement
    (_summary_chosen); their sources from one more.
    """
    now = timezone.now()
    parts = [
        p for p in _summary_parts(now, patient.demographics_source_ods)
        if policy.may_see_section(p.section)
    ]  # fmt: skip
    in_part: dict[str, list[Entry]] = {}
    totals: dict[str, int] = {}
    for entry, name, total in _summary_chosen(patient, policy, parts):
        in_part.setdefault(name, []).append(entry)
        totals[name] = total
    limited = {part.name for part in parts if part.limit}
    beyond = {name: totals[name] - len(in_part[name]) for name in in_part if name in limited}
    entries = list({e.pk: e for listed in in_part.values() for e in listed}.values())
    shown = dict(zip((e.pk for e in entries), _shown(entries, policy, visible), strict=True))
    lists = {
        part.name: [shown[e.pk] for e in _ordered(in_part.get(part.name, []), part.order)]
        for part in parts
    }

    def listed(name: str) -> list[ShownEntry]:
        return lists.get(name, [])  # a part outside the viewer's role lists nothing

    person = next(iter(in_part.get("person", [])), None)
    summary = Summary(
        alerts=[a for a in listed("alerts") if a.current],
        allergies=[a for a in listed("allergies") if a.code not in NO_KNOWN_ALLERGY_CODES],
        no_known_allergies=[a for a in listed("allergies") if a.code in NO_KNOWN_ALLERGY_CODES],
        medications=listed("medications"),
        problems=[p for p in listed("problems") if p.verification not in NOT_A_PROBLEM],
        encounters=listed("encounters"),
        results=listed("results"),
        appointments=listed("appointments"),
        care_plans=listed("care_plans"),
        person=listed("person"),
        contacts=listed("contacts"),
        beyond=beyond,
    )
    summary.about = about_the_person(
        person=policy.redact("Patient", person.resource) if person else None,
        person_entry=str(person.public_id) if person else "",
        items=[*summary.alerts, *summary.care_plans, *summary.contacts],
        now=now,
    )
    return summary


def _ordered(entries: list[Entry], order: tuple[str, ...]) -> list[Entry]:
    """The entries, sorted in place, in a queryset's order_by order as PostgreSQL sorts.

    PostgreSQL puts NULL above every value: last going up, first going down.
    """
    for order_field in reversed(order):  # stable sorts, the last key first
        name = order_field.lstrip("-")

        def key(entry: Entry, name: str = name) -> tuple[bool, Any]:
            value = getattr(entry, name)
            return (True, 0) if value is None else (False, value)

        entries.sort(key=key, reverse=order_field.startswith("-"))
    return entries


def _audited(shown: list[ShownEntry]) -> list[str]:
    """Every entry whose content a page shows: its rows, and the results shown on them."""
    return list(dict.fromkeys(i for item in shown for i in (item.public_id, *item.linked_entries)))


def _sources(patient: Patient, visible: VisibleEntries) -> tuple[list[SourceRow], int]:
    """Each connected organisation with what the viewer may see of it; and how many are withheld.

    Counted from the viewer's visible clinical entries only: an
    organisation's withheld items are never counted against it (they are
    counted once, overall), and its copy of the person's demographics is not
    an item (it would tell that the organisation knows the person, whatever
    the viewer may see of its care). One scan of the person's entries counts
    both, and is kept (_source_counts) until the person's record changes.
    """
    connected = list(Organisation.objects.with_active_agreement().order_by("kind", "name"))
    mine = _source_counts(patient, visible, connected)
    now = timezone.now()
    nothing: tuple[int, datetime.datetime | None, int] = (0, None, 0)
    rows = [
        SourceRow(
            name=org.name,
            ods_code=org.ods_code,
            kind=org.get_kind_display(),
            last_feed_at=org.last_feed_at,
            items_for_person=mine.get(org.pk, nothing)[0],
            latest_for_person=mine.get(org.pk, nothing)[1],
            late=org.feed_is_late(now),
            expected_every=(
                _in_words(now - org.feed_expected_interval, now, depth=2)
                if org.feed_expected_interval
                else ""
            ),
            last_received_ago=_in_words(org.last_feed_at, now),
        )
        for org in connected
    ]
    return rows, sum(withheld for _, _, withheld in mine.values())


def _in_words(since: datetime.datetime | None, now: datetime.datetime, depth: int = 1) -> str:
    """ "3 days", "1 day, 6 hours": a span in words with ordinary spaces ("" for none)."""
    return timesince(since, now, depth=depth).replace("\xa0", " ") if since else ""


SOURCE_COUNTS_SECONDS = 300


def _source_counts(
    patient: Patient, visible: VisibleEntries, connected: list[Organisation]
) -> dict[int, tuple[int, datetime.datetime | None, int]]:
    """Per source organisation: the items shown, the latest update, the items withheld.

    The scan grows with the record (tens of milliseconds at 50,000 entries)
    and runs on every page, so its answer is cached under a key made of
    everything it depends on: the query itself (the viewer's policy, the
    sensitivity rules and today's agreements are all in its SQL), the
    sharing organisations as they are now, and the person's RecordChange
    counter, which the database moves on with every write to their entries.
    """
    items = visible.items_where
    query = (
        visible.in_scope.order_by()
        .values("source_org")
        .annotate(
            n=Count("id", filter=items),
            latest=Max("updated_at", filter=items),
            withheld=Count("id", filter=visible.hidden_where),
        )
    )
    changed = (
        RecordChange.objects.filter(patient_id=patient.pk).values_list("changed", flat=True).first()
    )
    depends_on = (
        str(query.query),
        [(o.pk, o.kind, o.ods_code, o.dsa_start, o.dsa_end) for o in connected],
        patient.pk,
        changed,
    )
    key = "record-source-counts:" + hashlib.sha256(repr(depends_on).encode()).hexdigest()
    found: dict[int, tuple[int, datetime.datetime | None, int]] | None = cache.get(key)
    if found is None:
        found = {row["source_org"]: (row["n"], row["latest"], row["withheld"]) for row in query}
        cache.set(key, found, SOURCE_COUNTS_SECONDS)
    return found


def _patient_and_policy(
    *, viewer: User, patient_id: str, session_key: str, context: AuditContext | None, asked: str
) -> tuple[Patient, AccessBasis, ViewPolicy]:
    """The person (or an audited denial), the viewer's recorded basis and the policy under it.

    Raises AccessBasisRequired when this session has recorded no basis for the person.
    """
    patient = patient_or_denied(viewer=viewer, patient_id=patient_id, context=context, asked=asked)
    basis = access_basis_current(viewer=viewer, patient=patient, session_key=session_key)
    if basis is None:
        raise AccessBasisRequired("Record why you are viewing this record first.")
    return patient, basis, view_policy(viewer=viewer, basis=basis)


def record_view(
    *,
    viewer: User,
    patient_id: str,
    session_key: str,
    section: str | None = None,
    page: int = 1,
    context: AuditContext | None = None,
    filters: ResultFilters | None = None,
) -> CombinedRecord:
    """The record (its summary, or one page of a section) as this viewer may see it; audited.

    `filters` narrow the results section to one test and a date range.

    A section comes SECTION_PAGE_SIZE items a page, newest first; a page past
    the last raises SectionPageNotFound, reading and auditing nothing.

    Fails closed: without a current basis it raises AccessBasisRequired and
    shows nothing; a section outside the viewer's role raises
    SectionNotAvailable (audited as a denial); if the audit write fails,
    the error propagates and nothing is returned.
    Side effects: one audit event listing the entries shown and the count
    withheld.
    """
    patient, basis, policy = _patient_and_policy(
        viewer=viewer, patient_id=patient_id, session_key=session_key, context=context,
        asked="record",
    )  # fmt: skip
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
        visible = _visible_in(patient, policy, section) if section else everything.entries
        sources, withheld = _sources(patient, everything)
        record = CombinedRecord(
            patient=patient,
            basis=basis,
            policy=policy,
            registered_gp=_registered_gp(patient),
            sources=sources,
            withheld=withheld,
            hidden_sections=[
                label for value, label in RecordSection.choices if value not in policy.sections
            ],
            section=section,
        )
        if section is None:
            record.summary = _summary(patient, visible, policy)
            record.trends = trends_of(record.summary.results)
            summary = record.summary
            banner = _banner_of(
                [*summary.allergies, *summary.no_known_allergies, *summary.alerts,
                 *summary.care_plans],
                policy,
            )  # fmt: skip
            shown = summary.shown()
        else:
            if section == RecordSection.RESULTS:
                record.filters = filters or ResultFilters()
                visible = record.filters.apply(visible)
            ordered = visible.order_by("-effective_at", "-id")
            record.total_in_section = ordered.count()
            record.page = page
            record.pages = max(1, -(-record.total_in_section // SECTION_PAGE_SIZE))
            if page > record.pages:
                raise SectionPageNotFound("This part of the record has no such page.")
            start = (page - 1) * SECTION_PAGE_SIZE
            record.items = _shown(ordered[start : start + SECTION_PAGE_SIZE], policy, visible)
            if section == RecordSection.RESULTS:
                record.trends = trends_of(record.items)
                record.cumulative = cumulative_of(record.items)
                # Only the tests this page shows (each audited with its row) to filter by.
                record.tests = sorted(
                    {(i.code, i.title) for i in record.items
                     if i.resource_type == "Observation" and i.code},
                    key=lambda t: t[1].lower(),
                )  # fmt: skip
            record.groups = _groups(section, record.items)
            shown = record.items
            banner = _banner(patient, policy)
        record.banner = banner
        audit_event_record(
            action=AuditAction.SECTION_VIEW if section else AuditAction.RECORD_VIEW,
            actor=actor_for(viewer),
            subject=audit_subject_of(patient),
            purpose="ETREAT" if policy.break_glass else "TREAT",
            detail={
                "basis": str(basis.public_id),
                "section": section or "summary",
                **({"page": page} if section else {}),
                **(
                    {"filters": record.filters.audit_detail()}
                    if record.filters and record.filters.any
                    else {}
                ),
                "entries": list(dict.fromkeys([*_audited(shown), *banner.entries])),
                "withheld": withheld,
                "break_glass": policy.break_glass,
            },
            source_ods={item.source_ods for item in shown},
            context=context,
        )
    return record


def _groups(
    section: str, items: list[ShownEntry]
) -> list[tuple[str, list[ShownEntry], str]] | None:
    """Medicines split into current and stopped or past; problems into active and past; care
    plans and consents under their PRSB headings (About me, Legal information, End of life).

    The page's items keep their order (newest first) within each group; an
    item is current only as the summary counts it (its status, its period, a
    diagnosis not refuted), so nothing is listed as current here that is not
    on the summary's lists.
    """
    if section == RecordSection.MEDICATIONS:
        current = [i for i in items if i.status in CURRENT_MEDICATION and i.current]
        return [
            ("Current medications", current, "No current medications on this page."),
            ("Stopped and past medications", [i for i in items if i not in current],
             "No stopped or past medications on this page."),
        ]  # fmt: skip
    if section == RecordSection.PROBLEMS:
        active = [
            i for i in items if i.status in ACTIVE_CLINICAL and i.verification not in NOT_A_PROBLEM
        ]
        return [
            ("Active problems", active, "No active problems on this page."),
            ("Past problems", [i for i in items if i not in active],
             "No past problems on this page."),
        ]  # fmt: skip
    if section == RecordSection.CARE_PLANS:
        return _prsb_groups(items)
    return None


def _prsb_groups(items: list[ShownEntry]) -> list[tuple[str, list[ShownEntry], str]] | None:
    """Care plans and consents under their PRSB headings (presentation/prsb.py), then the rest.

    Only the headings the page has items for are listed, besides "Other care plans"; a page
    with none of them is one list, as before (None).
    """
    by_heading: dict[str, list[ShownEntry]] = {}
    rest: list[ShownEntry] = []
    for item in items:
        found = prsb_item_of(item)
        if found is None:
            rest.append(item)
        else:
            by_heading.setdefault(found[0], []).append(item)
    if not by_heading:
        return None
    groups = [(heading, by_heading[heading], "") for heading in HEADINGS if heading in by_heading]
    return [*groups, ("Other care plans", rest, "No other care plans on this page.")]


@dataclass(frozen=True)
class DocumentShown:
    patient: Patient
    entry: ShownEntry
    attachment: Attachment | None
    registered_gp: Organisation | None = None
    banner: Banner | None = None
    # What the page says it is viewed under ("Viewing as", or emergency access).
    basis: AccessBasis | None = None
    policy: ViewPolicy | None = None


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
    patient, basis, policy = _patient_and_policy(
        viewer=viewer, patient_id=patient_id, session_key=session_key, context=context,
        asked="document",
    )  # fmt: skip
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
        banner = _banner(patient, policy)
        audit_event_record(
            action=AuditAction.DOCUMENT_VIEW,
            actor=actor_for(viewer),
            subject=audit_subject_of(patient),
            purpose="ETREAT" if policy.break_glass else "TREAT",
            detail={
                "basis": str(basis.public_id),
                "entries": list(dict.fromkeys([str(entry.public_id), *banner.entries])),
            },
            source_ods=[entry.source_org.ods_code],
            context=context,
        )
    return DocumentShown(
        patient,
        _one_shown(entry, policy, timezone.now()),
        attachment_of(entry.resource),
        registered_gp=_registered_gp(patient),
        banner=banner,
        basis=basis,
        policy=policy,
    )


def _registered_gp(patient: Patient) -> Organisation | None:
    if not patient.registered_gp_ods:
        return None
    return Organisation.objects.filter(ods_code=patient.registered_gp_ods).first()
