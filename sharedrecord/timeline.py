"""The record's timeline: everything the viewer may see, across sources, newest first.

Filtered by date range, organisation, care setting (the kind of organisation
that sent it) and kind (the record section). Read and audited exactly like a
section (record.py): a page of SECTION_PAGE_SIZE items, one audit event naming
every item shown and the filters used.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import QuerySet

from audit.models import AuditAction
from audit.trail import AuditContext, audit_event_record
from sharedrecord.access import entries_visible
from sharedrecord.auditing import actor_for
from sharedrecord.exceptions import SectionPageNotFound
from sharedrecord.models import Entry, OrganisationKind, RecordSection, User
from sharedrecord.record import (
    SECTION_PAGE_SIZE,
    CombinedRecord,
    _audited,
    _banner,
    _patient_and_policy,
    _registered_gp,
    _shown,
    _sources,
)
from sharedrecord.search import audit_subject_of


@dataclass(frozen=True)
class TimelineFilters:
    """What the timeline was narrowed to; every field optional."""

    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    organisation: str = ""  # ODS code
    setting: str = ""  # OrganisationKind value
    kind: str = ""  # RecordSection value

    @property
    def any(self) -> bool:
        return bool(
            self.date_from or self.date_to or self.organisation or self.setting or self.kind
        )

    def apply(self, entries: QuerySet[Entry]) -> QuerySet[Entry]:
        if self.date_from:
            entries = entries.filter(effective_at__date__gte=self.date_from)
        if self.date_to:
            entries = entries.filter(effective_at__date__lte=self.date_to)
        if self.organisation:
            entries = entries.filter(source_org__ods_code=self.organisation)
        if self.setting:
            entries = entries.filter(source_org__kind=self.setting)
        if self.kind:
            entries = entries.filter(section=self.kind)
        return entries

    def audit_detail(self) -> dict[str, str]:
        return {
            k: v for k, v in (
                ("from", self.date_from.isoformat() if self.date_from else ""),
                ("to", self.date_to.isoformat() if self.date_to else ""),
                ("organisation", self.organisation), ("setting", self.setting),
                ("kind", self.kind),
            ) if v
        }  # fmt: skip


@dataclass
class Timeline:
    record: CombinedRecord
    filters: TimelineFilters
    organisations: list[tuple[str, str]] = field(default_factory=list)  # (ODS, name)
    settings: list[tuple[str, str]] = field(default_factory=list)  # (kind, label)
    kinds: list[tuple[str, str]] = field(default_factory=list)  # (section, label)


def record_timeline(
    *,
    viewer: User,
    patient_id: str,
    session_key: str,
    filters: TimelineFilters,
    page: int = 1,
    context: AuditContext | None = None,
) -> Timeline:
    """One page of the person's timeline as this viewer may see it; audited like a section.

    Fails closed as record_view does (AccessBasisRequired, PatientNotFound);
    a page past the last raises SectionPageNotFound, reading and auditing
    nothing. Side effects: one audit event (section-view, section "timeline")
    listing the entries shown, the banner's alerts, the filters and the count
    withheld.
    """
    patient, basis, policy = _patient_and_policy(
        viewer=viewer, patient_id=patient_id, session_key=session_key, context=context,
        asked="record",
    )  # fmt: skip
    with transaction.atomic():
        everything = entries_visible(patient=patient, policy=policy)
        clinical = everything.entries.exclude(section=RecordSection.DEMOGRAPHICS)
        sources, withheld = _sources(patient, everything)
        record = CombinedRecord(
            patient=patient, basis=basis, policy=policy, registered_gp=_registered_gp(patient),
            sources=sources, withheld=withheld,
            hidden_sections=[
                label for value, label in RecordSection.choices if value not in policy.sections
            ],
            section="timeline",
        )  # fmt: skip
        ordered = filters.apply(clinical).order_by("-effective_at", "-id")
        record.total_in_section = ordered.count()
        record.page = page
        record.pages = max(1, -(-record.total_in_section // SECTION_PAGE_SIZE))
        if page > record.pages:
            raise SectionPageNotFound("The timeline has no such page.")
        start = (page - 1) * SECTION_PAGE_SIZE
        record.items = _shown(
            ordered.select_related("source_org")[start : start + SECTION_PAGE_SIZE],
            policy,
            clinical,
        )
        banner = _banner(patient, policy)
        record.banner = banner
        shown = record.items
        audit_event_record(
            action=AuditAction.SECTION_VIEW,
            actor=actor_for(viewer),
            subject=audit_subject_of(patient),
            purpose="ETREAT" if policy.break_glass else "TREAT",
            detail={
                "basis": str(basis.public_id),
                "section": "timeline",
                "page": page,
                "entries": list(dict.fromkeys([*_audited(shown), *banner.entries])),
                "withheld": withheld,
                "break_glass": policy.break_glass,
                **({"filters": filters.audit_detail()} if filters.any else {}),
            },
            source_ods={item.source_ods for item in shown},
            context=context,
        )
    # The choices come from what is connected and configured, never from the person's
    # entries, so the form itself tells nothing about the record.
    connected = [(s.ods_code, s.name) for s in sources]
    kind_of = {str(label): str(value) for value, label in OrganisationKind.choices}
    kinds = sorted({kind_of[s.kind] for s in sources if s.kind in kind_of})
    return Timeline(
        record=record,
        filters=filters,
        organisations=connected,
        settings=[(k, str(OrganisationKind(k).label)) for k in kinds],
        kinds=[
            (v, label) for v, label in RecordSection.choices
            if v in policy.sections and v != RecordSection.DEMOGRAPHICS
        ],
    )  # fmt: skip
