"""Governance reads of the audit trail: searches, the review queue, subject access.

Every function takes a GovernanceScope and reads only what it allows. These
reads are not audited here: audit/governance.py wraps each one a person asks
for in an AUDIT_QUERY, AUDIT_EXPORT or SUBJECT_ACCESS_REPORT event.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from audit.models import (
    CLOSING_OUTCOMES,
    FLAGGED_FOR_REVIEW,
    AccessReview,
    AuditAction,
    AuditEvent,
    AuditEventHolder,
)

PAGE_SIZE = 50

# What a person sees in their subject access report: every time someone was
# shown, or asked for, something about them.
SUBJECT_ACCESS_ACTIONS = (
    AuditAction.IDENTITY_VIEW,
    AuditAction.ACCESS_BASIS,
    AuditAction.BREAK_GLASS,
    AuditAction.RECORD_VIEW,
    AuditAction.SECTION_VIEW,
    AuditAction.DOCUMENT_VIEW,
    AuditAction.API_READ,
    AuditAction.ACCESS_DENIED,
    AuditAction.AUDIT_QUERY,
    AuditAction.AUDIT_EXPORT,
    AuditAction.SUBJECT_ACCESS_REPORT,
)


class ScopeKind(models.TextChoices):
    """The parts of the trail an organisation's privacy officer may switch between."""

    HOLDER = "holder", "Accesses to your organisation's record"
    STAFF = "staff", "Your staff's accesses"


WHOLE_TRAIL = "whole-trail"


@dataclass(frozen=True)
class GovernanceScope:
    """The part of the trail a governance officer may read.

    Neither code set: the whole trail (the programme's privacy officers).
    `holder_ods`: the record holder's view for that organisation: accesses to
    people registered with it (the event's patient_gp_ods, as at the event)
    and accesses that were shown data it contributed (source_ods), and
    nothing else.
    `staff_ods`: the staff view for that organisation: every event whose
    actor belonged to it (the event's actor_org_ods, as at the event), about
    anyone, and nothing else.
    """

    holder_ods: str = ""
    staff_ods: str = ""

    def __post_init__(self) -> None:
        if self.holder_ods and self.staff_ods:
            raise ValueError("A scope is one organisation's holder view or its staff view.")

    @property
    def whole_trail(self) -> bool:
        return not self.holder_ods and not self.staff_ods

    @property
    def kind(self) -> str:
        """ScopeKind.HOLDER, ScopeKind.STAFF or WHOLE_TRAIL."""
        if self.staff_ods:
            return ScopeKind.STAFF.value
        if self.holder_ods:
            return ScopeKind.HOLDER.value
        return WHOLE_TRAIL

    def covers(self, kind: str) -> bool:
        """True when this scope answers a request for that kind (the whole trail answers all)."""
        return self.whole_trail or self.kind == kind

    def audit_detail(self) -> dict[str, str]:
        """How the audit event of a governance read names this scope.

        `scope` is the organisation (or "whole-trail"), as in events written
        before the staff view existed; `scope_kind` says which of its views.
        """
        return {"scope": self.staff_ods or self.holder_ods or WHOLE_TRAIL, "scope_kind": self.kind}

    def events(self) -> QuerySet[AuditEvent]:
        events = AuditEvent.objects.all()
        if self.staff_ods:
            return events.filter(actor_org_ods=self.staff_ods)
        if self.holder_ods:
            return events.filter(
                Q(patient_gp_ods=self.holder_ods) | Q(source_ods__contains=[self.holder_ods])
            )
        return events


@dataclass(frozen=True)
class AuditQuery:
    """What a governance officer asked for; every field is optional."""

    nhs_number: str = ""
    user: str = ""
    organisation: str = ""
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    action: str = ""
    outcome: str = ""

    def filters(self) -> dict[str, Any]:
        """The filters used, for the audit event (the NHS number goes in its subject)."""
        asked = {
            "nhs_number": bool(self.nhs_number),
            "user": self.user,
            "organisation": self.organisation,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "action": self.action,
            "outcome": self.outcome,
        }
        return {key: value for key, value in asked.items() if value}


@dataclass(frozen=True)
class Cursor:
    """Where a page of results ends: keyset paging over (occurred_at, id), newest first."""

    occurred_at: datetime.datetime
    id: int

    def token(self) -> str:
        return f"{self.occurred_at.astimezone(datetime.UTC).isoformat()}_{self.id}"

    @classmethod
    def parse(cls, token: str) -> Cursor | None:
        when, _, ident = token.partition("_")
        try:
            return cls(datetime.datetime.fromisoformat(when), int(ident))
        except ValueError:
            return None


@dataclass(frozen=True)
class EventPage:
    events: list[AuditEvent]
    next_cursor: Cursor | None


def _day_start(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


def _window(prefix: str, id_field: str, query: AuditQuery, after: Cursor | None) -> Q:
    """The date range and the keyset cursor, on the fields of one table."""
    window = Q()
    if query.date_from:
        window &= Q(**{f"{prefix}occurred_at__gte": _day_start(query.date_from)})
    if query.date_to:
        day_after = _day_start(query.date_to + datetime.timedelta(days=1))
        window &= Q(**{f"{prefix}occurred_at__lt": day_after})
    if after is not None:
        # The first bound alone gives the index a place to start.
        window &= Q(**{f"{prefix}occurred_at__lte": after.occurred_at}) & (
            Q(**{f"{prefix}occurred_at__lt": after.occurred_at})
            | Q(**{f"{prefix}occurred_at": after.occurred_at, f"{prefix}{id_field}__lt": after.id})
        )
    return window


def _uses_holder_index(scope: GovernanceScope, query: AuditQuery) -> bool:
    """A record holder's view with no person or user to narrow it.

    With a person or a user, their own index is narrower, and the scope is
    checked on the few events it finds. A staff view needs no index of its
    own: its one condition (actor_org_ods) is the leading column of
    audit_event_actor_org_idx, read backwards on each monthly partition.
    """
    return bool(scope.holder_ods) and not query.nhs_number and not query.user


def _filtered(events: QuerySet[AuditEvent], query: AuditQuery) -> QuerySet[AuditEvent]:
    if query.nhs_number:
        events = events.filter(nhs_number=query.nhs_number)
    if query.user:
        events = events.filter(actor_name=query.user)
    if query.organisation:
        events = events.filter(actor_org_ods=query.organisation)
    if query.action:
        events = events.filter(action=query.action)
    if query.outcome:
        events = events.filter(outcome=query.outcome)
    return events


def audit_events_matching(
    *, scope: GovernanceScope, query: AuditQuery, after: Cursor | None = None
) -> QuerySet[AuditEvent]:
    """Events in scope that match every filter given, newest first, after `after` if given.

    The scope is applied as a filter; for a record holder's whole view,
    audit_events_page and audit_events_stream read the holder index instead.
    """
    events = scope.events().filter(_window("", "id", query, after))
    return _filtered(events, query).order_by("-occurred_at", "-id")


HOLDER_BATCH = 500  # the largest batch; the first is the size the caller needs


def _holder_events(
    *, scope: GovernanceScope, query: AuditQuery, after: Cursor | None, first_batch: int
) -> Iterator[AuditEvent]:
    """A record holder's events, newest first, read through the record holders' index.

    Steps:
    1. Read the next batch of (occurred_at, event id) pairs for the holder
       from its index, newest first (keyset, inside the date range): first
       `first_batch` of them, then four times as many each time, up to
       HOLDER_BATCH, so a page reads no more events than it shows unless
       filters drop some.
    2. Fetch those events (by id, within the batch's time span, so only the
       months it covers are read) with the other filters applied.
    3. Yield them in the index's order; repeat until the index runs out.
    PostgreSQL cannot be left to join the two: it misjudges the join's size
    and sorts the holder's whole history instead of stopping after a page.
    """
    window = _window("", "event_id", query, after)
    last: Cursor | None = None
    size = min(first_batch, HOLDER_BATCH)
    while True:
        holders = AuditEventHolder.objects.filter(window, holder_ods=scope.holder_ods)
        if last is not None:
            holders = holders.filter(_window("", "event_id", AuditQuery(), last))
        batch = list(
            holders.order_by("-occurred_at", "-event_id").values_list("occurred_at", "event_id")[
                :size
            ]
        )
        if not batch:
            return
        events = _filtered(
            AuditEvent.objects.filter(
                id__in=[event_id for _, event_id in batch],
                occurred_at__gte=batch[-1][0],
                occurred_at__lte=batch[0][0],
            ),
            query,
        )
        found = {event.id: event for event in events}
        for _, event_id in batch:
            if event_id in found:
                yield found[event_id]
        if len(batch) < size:
            return
        last = Cursor(*batch[-1])
        size = min(size * 4, HOLDER_BATCH)


def audit_events_page(
    *, scope: GovernanceScope, query: AuditQuery, after: Cursor | None = None, size: int = PAGE_SIZE
) -> EventPage:
    """One page of matching events, newest first, after `after` (keyset paging).

    Keyset paging keeps page 1,000 as fast as page 1 on a 100-million-row trail
    and never repeats or skips an event while new ones arrive.
    """
    if _uses_holder_index(scope, query):
        events = _holder_events(scope=scope, query=query, after=after, first_batch=size + 1)
        rows = list(itertools.islice(events, size + 1))
    else:
        rows = list(audit_events_matching(scope=scope, query=query, after=after)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    last = rows[-1] if more else None
    return EventPage(rows, Cursor(last.occurred_at, last.id) if last else None)


def audit_events_stream(*, scope: GovernanceScope, query: AuditQuery) -> Iterator[AuditEvent]:
    """Every matching event, newest first, read in chunks."""
    if _uses_holder_index(scope, query):
        return _holder_events(scope=scope, query=query, after=None, first_batch=HOLDER_BATCH)
    return audit_events_matching(scope=scope, query=query).iterator(chunk_size=2000)


def audit_event_in_scope(*, scope: GovernanceScope, event_id: int) -> AuditEvent | None:
    return scope.events().filter(id=event_id).first()


def audit_event_in_scopes(
    *, scopes: Sequence[GovernanceScope], event_id: int
) -> tuple[AuditEvent, GovernanceScope] | None:
    """The event and the first of `scopes` that holds it, or None if none of them does.

    One query per scope tried, in the order given, so the scope a person is
    looking at (put first) answers without a second query.
    """
    for scope in scopes:
        event = audit_event_in_scope(scope=scope, event_id=event_id)
        if event is not None:
            return event, scope
    return None


def _closed() -> QuerySet[AccessReview]:
    return AccessReview.objects.filter(event_id=OuterRef("id"), outcome__in=CLOSING_OUTCOMES)


def audit_review_queue(*, scope: GovernanceScope) -> QuerySet[AuditEvent]:
    """Flagged accesses (break-glass, self-claimed) with no closing finding.

    Emergency (break-glass) accesses first, then the rest; each oldest first.
    A referred access stays here until someone records justified or not justified.
    """
    emergency_first = models.Case(
        models.When(action=AuditAction.BREAK_GLASS, then=models.Value(0)),
        default=models.Value(1),
        output_field=models.IntegerField(),
    )
    return (
        scope.events()
        .filter(FLAGGED_FOR_REVIEW)
        .exclude(Exists(_closed()))
        .order_by(emergency_first, "occurred_at", "id")
    )


# The events that record an access basis (the ones a privacy officer reviews).
BASIS_ACTIONS = (AuditAction.ACCESS_BASIS, AuditAction.BREAK_GLASS)
# What a member of staff can open under an access basis.
OPENED_UNDER_BASIS = (AuditAction.RECORD_VIEW, AuditAction.SECTION_VIEW, AuditAction.DOCUMENT_VIEW)
OPENED_SHOWN = 200


def audit_opened_under_basis(*, scope: GovernanceScope, event: AuditEvent) -> list[AuditEvent]:
    """What the member of staff opened under the basis this event recorded, oldest first.

    Empty for an event that recorded no basis. Only events in the scope, by
    the same actor, about the same person, at or after the basis (at most
    OPENED_SHOWN): one query.
    """
    basis = event.detail.get("basis") if isinstance(event.detail, dict) else None
    if event.action not in BASIS_ACTIONS or not isinstance(basis, str) or not basis:
        return []
    return list(
        scope.events()
        .filter(
            nhs_number=event.nhs_number,
            actor_id=event.actor_id,
            occurred_at__gte=event.occurred_at,
            action__in=OPENED_UNDER_BASIS,
            detail__basis=basis,
        )
        .order_by("occurred_at", "id")[:OPENED_SHOWN]
    )


def access_reviews_for(*, event_id: int) -> list[AccessReview]:
    return list(AccessReview.objects.filter(event_id=event_id).order_by("reviewed_at", "id"))


def audit_events_about(*, scope: GovernanceScope, nhs_number: str) -> list[AuditEvent]:
    """Every event in scope where something about this person was shown or asked for."""
    return list(
        scope.events()
        .filter(nhs_number=nhs_number, action__in=SUBJECT_ACCESS_ACTIONS)
        .order_by("-occurred_at", "-id")
    )
