"""Governance: who reads the audit trail, their searches, exports, findings and reports.

Each read a person asks for is a service here that writes its own
AUDIT_QUERY (or export, review, subject access) event; the queries behind
them are audit.selectors'. Who may read the trail, and how much, is decided
by the resolver the app that owns users registers (sharedrecord.access).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.integrity import review_digest
from audit.models import CLOSING_OUTCOMES, AccessReview, AuditAction, AuditEvent, ReviewOutcome
from audit.selectors import (
    BASIS_ACTIONS,
    AuditQuery,
    Cursor,
    EventPage,
    GovernanceScope,
    ScopeKind,
    access_reviews_for,
    audit_event_in_scopes,
    audit_events_about,
    audit_events_page,
    audit_events_stream,
    audit_opened_under_basis,
    audit_review_queue,
)
from audit.trail import AuditActor, AuditContext, AuditSubject, audit_event_record


class ScopeUnknown(Exception):
    """A request named a part of the trail that does not exist (neither holder nor staff)."""


@dataclass(frozen=True)
class GovernanceViewer:
    """A member of staff who may read the trail: who they are, and how much they may see.

    `scope` is the part of the trail they are reading now; `held` lists every
    part they may read, the default first (empty: `scope` alone). Lists and
    searches read `scope`; one event may be opened or reviewed if any scope
    held contains it.
    """

    user: Any
    actor: AuditActor
    scope: GovernanceScope
    held: tuple[GovernanceScope, ...] = ()

    @property
    def scopes(self) -> tuple[GovernanceScope, ...]:
        """Every scope held, the one in use first."""
        return (self.scope, *(scope for scope in self.held if scope != self.scope))

    @property
    def switchable(self) -> bool:
        """True when the viewer holds more than one scope (the pages show a switch)."""
        return len(self.scopes) > 1

    def in_scope(self, kind: str) -> GovernanceViewer:
        """The same viewer reading the scope of that kind; "" keeps the scope in use.

        A viewer of the whole trail stays on it, whichever kind is asked for:
        the switch never narrows the programme's officers.
        Raises ScopeUnknown for a kind that is not one of ScopeKind's, or one
        the viewer does not hold.
        """
        if not kind:
            return self
        if kind not in ScopeKind.values:
            raise ScopeUnknown(f"Choose {' or '.join(ScopeKind.values)} for the scope.")
        for scope in self.scopes:
            if scope.covers(kind):
                return replace(self, scope=scope)
        raise ScopeUnknown("You do not hold that part of the audit trail.")


GovernanceResolver = Callable[[Any], GovernanceViewer | None]
_resolvers: list[GovernanceResolver] = []


def governance_resolver_register(resolver: GovernanceResolver) -> None:
    """Say who may read the trail. The app that owns users registers this at start-up.

    The audit app imports none of ours, so it cannot know roles itself.
    """
    if resolver not in _resolvers:
        _resolvers.append(resolver)


def governance_viewer_of(user: Any) -> GovernanceViewer | None:
    """The governance viewer for this user, or None if they may not read the trail."""
    if not _resolvers:
        raise RuntimeError("No governance resolver is registered.")
    return _resolvers[0](user)


def audit_search(
    *,
    viewer: GovernanceViewer,
    query: AuditQuery,
    after: Cursor | None,
    context: AuditContext,
    via: str = "page",
) -> EventPage:
    """A page of the trail for a governance officer, in the scope they are reading.

    Side effects: one AUDIT_QUERY event naming the scope, the filters and how
    many rows were shown.
    """
    with transaction.atomic():
        page = audit_events_page(scope=viewer.scope, query=query, after=after)
        audit_event_record(
            action=AuditAction.AUDIT_QUERY,
            actor=viewer.actor,
            subject=AuditSubject(nhs_number=query.nhs_number),
            purpose="HOPERAT",
            detail={"via": via, "filters": query.filters(), "shown": len(page.events),
                    **viewer.scope.audit_detail(), "page": after is not None},
            context=context,
        )  # fmt: skip
    return page


def audit_export(
    *, viewer: GovernanceViewer, query: AuditQuery, context: AuditContext
) -> Iterator[AuditEvent]:
    """Every matching event for a CSV export, streamed.

    The AUDIT_EXPORT event commits before the first row is read, so an
    export that is cut off half way is still on the record.
    Side effects: one AUDIT_EXPORT event naming the scope and the filters.
    """
    audit_event_record(
        action=AuditAction.AUDIT_EXPORT,
        actor=viewer.actor,
        subject=AuditSubject(nhs_number=query.nhs_number),
        purpose="HOPERAT",
        detail={"format": "csv", "filters": query.filters(), **viewer.scope.audit_detail()},
        context=context,
    )  # fmt: skip
    return audit_events_stream(scope=viewer.scope, query=query)


class ReviewRefused(Exception):
    """The access cannot be reviewed (not found in scope, not flagged, or already closed)."""


@transaction.atomic
def access_review_record(
    *,
    viewer: GovernanceViewer,
    event_id: int,
    outcome: ReviewOutcome,
    note: str,
    context: AuditContext,
) -> AccessReview:
    """Record a finding on one flagged access; a referral leaves it open for a final finding.

    Raises ReviewRefused if the event is in none of the scopes the viewer
    holds (a record holder's officer reviews accesses to its record and its
    own staff's accesses, nothing else), was not flagged for review, or
    already has a closing finding, or the note is empty.
    Side effects: one AccessReview row and one AUDIT_REVIEW event naming the
    scope that holds the event and carrying a digest of the finding, which
    audit_verify compares with the row.
    """
    found = audit_event_in_scopes(scopes=viewer.scopes, event_id=event_id)
    if found is None or not found[0].flagged_for_review:
        raise ReviewRefused("There is no access awaiting review with that number.")
    event, scope = found
    if AccessReview.objects.filter(event_id=event_id, outcome__in=CLOSING_OUTCOMES).exists():
        raise ReviewRefused("This access has already been reviewed.")
    if not note.strip():
        raise ReviewRefused("Write a note saying why you reached this finding.")
    review = AccessReview(
        event_id=event.id,
        event_occurred_at=event.occurred_at,
        outcome=outcome,
        note=note.strip(),
        reviewer=viewer.user,
        reviewer_name=viewer.actor.name,
    )
    review.full_clean()
    review.save()
    audit_event_record(
        action=AuditAction.AUDIT_REVIEW,
        actor=viewer.actor,
        subject=AuditSubject(
            patient_id=event.patient_id, nhs_number=event.nhs_number, gp_ods=event.patient_gp_ods
        ),
        purpose="HOPERAT",
        detail={"event": event.id, "review": str(review.public_id), "outcome": str(outcome),
                "reviewed_action": event.action, "reviewed_actor": event.actor_name,
                "review_sha256": review_digest(review), **scope.audit_detail()},
        context=context,
    )  # fmt: skip
    return review


# What each access showed, in words a citizen reads (audit imports none of our apps, so
# the record's section names are repeated here).
SECTION_WORDS = {
    "summary": "the summary", "demographics": "personal details",
    "contacts": "contacts and care team", "alerts": "alerts", "allergies": "allergies",
    "medications": "medicines", "problems": "problems and diagnoses", "results": "test results",
    "encounters": "visits and admissions", "referrals": "referrals",
    "appointments": "appointments", "care-plans": "care plans", "documents": "documents",
    "procedures": "procedures", "immunisations": "vaccinations",
}  # fmt: skip
ACTION_WORDS = {
    AuditAction.PATIENT_SEARCH: "found the person in a search",
    AuditAction.IDENTITY_VIEW: "checked who the person is",
    AuditAction.ACCESS_BASIS: "recorded why they needed the record",
    AuditAction.BREAK_GLASS: "used emergency access",
    AuditAction.DOCUMENT_VIEW: "a document",
}


@dataclass(frozen=True)
class AccessGroup:
    """One member of staff's accesses on one day, from one organisation."""

    organisation_ods: str
    actor_name: str
    actor_role: str
    day: datetime.date
    events: list[AuditEvent]

    @property
    def seen(self) -> list[str]:
        """What they looked at or did, in words, in the order they first did it."""
        words: list[str] = []
        for event in sorted(self.events, key=lambda e: (e.occurred_at, e.id)):
            section = event.detail.get("section") if isinstance(event.detail, dict) else None
            if isinstance(section, str) and section:
                words.append(SECTION_WORDS.get(section, section.replace("-", " ")))
            elif event.action in ACTION_WORDS:
                words.append(ACTION_WORDS[AuditAction(event.action)])
            else:
                words.append(event.get_action_display().lower())
        return list(dict.fromkeys(words))

    @property
    def reasons(self) -> list[AuditEvent]:
        """The events that say why they looked (an emergency, or a relationship described)."""
        return [e for e in self.events if e.action in (AuditAction.BREAK_GLASS,
                                                      AuditAction.ACCESS_BASIS)]  # fmt: skip

    @property
    def emergency(self) -> bool:
        return any(
            e.action == AuditAction.BREAK_GLASS or e.detail.get("break_glass") is True
            for e in self.events
        )

    @property
    def first_at(self) -> datetime.datetime:
        return min(e.occurred_at for e in self.events)

    @property
    def last_at(self) -> datetime.datetime:
        return max(e.occurred_at for e in self.events)


@dataclass(frozen=True)
class GovernanceLine:
    """What one privacy officer did about the person on one day (how many times, when)."""

    organisation_ods: str
    actor_name: str
    day: datetime.date
    did: str
    times: int
    first_at: datetime.datetime
    last_at: datetime.datetime


@dataclass(frozen=True)
class SubjectAccessReport:
    nhs_number: str
    produced_at: datetime.datetime
    produced_by: str
    scope: GovernanceScope
    events: list[AuditEvent]

    @property
    def emergency_count(self) -> int:
        return sum(1 for e in self.events if e.action == AuditAction.BREAK_GLASS)

    @property
    def care_events(self) -> list[AuditEvent]:
        """Accesses by staff caring for the person (governance work is listed apart)."""
        return [e for e in self.events if e.purpose != "HOPERAT"]

    @property
    def governance_events(self) -> list[AuditEvent]:
        """Searches and reports by privacy officers about the person."""
        return [e for e in self.events if e.purpose == "HOPERAT"]

    @property
    def governance_lines(self) -> list[GovernanceLine]:
        """Governance work grouped by officer, organisation, day and what they did, newest
        first: one line however many searches it took."""
        grouped: dict[tuple[str, str, datetime.date, str], list[AuditEvent]] = {}
        for event in self.governance_events:
            day = timezone.localtime(event.occurred_at).date()
            key = (event.actor_org_ods, event.actor_name, day, event.get_action_display())
            grouped.setdefault(key, []).append(event)
        lines = [
            GovernanceLine(ods, name, day, action.lower(), len(events),
                           min(e.occurred_at for e in events), max(e.occurred_at for e in events))
            for (ods, name, day, action), events in grouped.items()
        ]  # fmt: skip
        return sorted(lines, key=lambda line: line.last_at, reverse=True)

    @property
    def groups(self) -> list[AccessGroup]:
        """Care accesses grouped by organisation, member of staff and day, newest day first."""
        grouped: dict[tuple[str, str, datetime.date], list[AuditEvent]] = {}
        for event in self.care_events:
            day = timezone.localtime(event.occurred_at).date()
            grouped.setdefault((event.actor_org_ods, event.actor_name, day), []).append(event)
        groups = [
            AccessGroup(ods, name, events[0].actor_role, day, events)
            for (ods, name, day), events in grouped.items()
        ]
        return sorted(groups, key=lambda g: (g.day, g.last_at), reverse=True)


@transaction.atomic
def subject_access_report(
    *, viewer: GovernanceViewer, nhs_number: str, context: AuditContext
) -> SubjectAccessReport:
    """Who was shown what about one person, when, from where, and why.

    Side effects: one SUBJECT_ACCESS_REPORT event.
    """
    events = audit_events_about(scope=viewer.scope, nhs_number=nhs_number)
    audit_event_record(
        action=AuditAction.SUBJECT_ACCESS_REPORT,
        actor=viewer.actor,
        subject=AuditSubject(nhs_number=nhs_number),
        purpose="HOPERAT",
        detail={"events": len(events), **viewer.scope.audit_detail()},
        context=context,
    )
    return SubjectAccessReport(nhs_number, timezone.now(), viewer.actor.name, viewer.scope, events)


def audit_review_queue_view(
    *, viewer: GovernanceViewer, context: AuditContext, limit: int = 200
) -> tuple[list[AuditEvent], int]:
    """The oldest open flagged accesses (up to `limit`) and how many are open in all.

    Side effects: one AUDIT_QUERY event naming the rows shown.
    """
    with transaction.atomic():
        queue = audit_review_queue(scope=viewer.scope)
        events = list(queue[:limit])
        total = queue.count()
        audit_event_record(
            action=AuditAction.AUDIT_QUERY,
            actor=viewer.actor,
            purpose="HOPERAT",
            detail={"via": "review-queue", "shown": [e.id for e in events],
                    **viewer.scope.audit_detail()},
            context=context,
        )  # fmt: skip
    return events, total


def audit_event_view(
    *, viewer: GovernanceViewer, event_id: int, context: AuditContext
) -> tuple[AuditEvent, list[AccessReview]] | None:
    """One event in any scope the viewer holds, with its findings, or None.

    None alike for absent and out of every scope held. The scope in use is
    tried first.
    Side effects: one AUDIT_QUERY event when the event is shown, naming the
    scope that holds it.
    """
    with transaction.atomic():
        found = audit_event_in_scopes(scopes=viewer.scopes, event_id=event_id)
        if found is None:
            return None
        event, scope = found
        audit_event_record(
            action=AuditAction.AUDIT_QUERY,
            actor=viewer.actor,
            subject=AuditSubject(nhs_number=event.nhs_number),
            purpose="HOPERAT",
            detail={"via": "event", "shown": [event.id], **scope.audit_detail()},
            context=context,
        )  # fmt: skip
        return event, access_reviews_for(event_id=event.id)


def audit_opened_under_basis_view(
    *, viewer: GovernanceViewer, event: AuditEvent, context: AuditContext
) -> list[AuditEvent]:
    """What the member of staff opened under the basis `event` recorded (for its review).

    `event` must be one the viewer was shown (audit_event_view). Side effects:
    one AUDIT_QUERY event naming the events shown, when there are any.
    """
    if event.action not in BASIS_ACTIONS:
        return []
    with transaction.atomic():
        opened = audit_opened_under_basis(scope=viewer.scope, event=event)
        if not opened and not viewer.scope.whole_trail:
            for scope in viewer.scopes:
                opened = audit_opened_under_basis(scope=scope, event=event)
                if opened:
                    break
        if opened:
            audit_event_record(
                action=AuditAction.AUDIT_QUERY,
                actor=viewer.actor,
                subject=AuditSubject(nhs_number=event.nhs_number),
                purpose="HOPERAT",
                detail={"via": "basis-use", "of": event.id, "shown": [e.id for e in opened]},
                context=context,
            )  # fmt: skip
        return opened


def audit_unreviewed_count(*, viewer: GovernanceViewer) -> int:
    """How many flagged accesses in the scope in use await a finding (a count: not audited)."""
    return audit_review_queue(scope=viewer.scope).count()
