"""What the opt-out registry shows, to a practice or a partner system: every read audited.

The queries are optout.selectors'; each function here runs one, writes the
OPTOUT_VIEW (or OPTOUT_EXPORT) event in the same transaction, and returns
what may be shown. The pages and the API both call these, so a read is
audited the same way whichever door it came through.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet

from audit.models import AuditAction
from audit.trail import AuditActor, AuditContext, AuditSubject, audit_event_record
from optout.models import OptOut, OptOutChange
from optout.selectors import optins_since, optout_history_for, optouts_for_practice
from sharedrecord.access import optin_shown_to_partner
from sharedrecord.auditing import actor_for
from sharedrecord.models import Organisation, User


@dataclass(frozen=True)
class OptOutPage:
    entries: list[OptOut]
    total: int
    page: int


@transaction.atomic
def optout_list_view(
    *,
    viewer: User,
    practice: Organisation,
    search: str,
    page: int,
    page_size: int,
    context: AuditContext,
) -> OptOutPage:
    """One page of the practice's own entries, newest change first.

    Side effects: one OPTOUT_VIEW event saying how many were listed, which
    page, and whether a search was given (never the number searched for).
    """
    entries = optouts_for_practice(practice=practice, search=search).select_related("practice")
    rows = list(entries[(page - 1) * page_size : page * page_size])
    audit_event_record(
        action=AuditAction.OPTOUT_VIEW,
        actor=actor_for(viewer),
        detail={"listed": len(rows), "page": page, "search": bool(search)},
        context=context,
    )
    return OptOutPage(rows, entries.count(), page)


@dataclass(frozen=True)
class OptOutShown:
    entry: OptOut
    history: QuerySet[OptOutChange]


@transaction.atomic
def optout_entry_view(
    *, viewer: User, practice: Organisation, optout_id: uuid.UUID | str, context: AuditContext
) -> OptOutShown | None:
    """One of the practice's own entries with the changes recorded for it, or None.

    None alike for an entry that does not exist and one another practice
    holds. Side effects: one OPTOUT_VIEW event naming the entry and the person
    (their NHS number, so a search of the trail by number finds the view).
    """
    entry = OptOut.objects.filter(public_id=optout_id, practice=practice).first()
    if entry is None:
        return None
    audit_event_record(
        action=AuditAction.OPTOUT_VIEW,
        actor=actor_for(viewer),
        subject=AuditSubject(nhs_number=entry.nhs_number, gp_ods=practice.ods_code),
        detail={"optout": str(entry.public_id)},
        context=context,
    )
    return OptOutShown(entry, optout_history_for(optout=entry, practice=practice))


def optout_export(
    *, viewer: User, practice: Organisation, context: AuditContext
) -> Iterator[OptOut]:
    """Every entry of the practice, streamed for a CSV export.

    The OPTOUT_EXPORT event commits before the first row is read, so an
    export cut off half way is still on the record.
    Side effects: one OPTOUT_EXPORT event with the number of rows.
    """
    entries = optouts_for_practice(practice=practice)
    audit_event_record(
        action=AuditAction.OPTOUT_EXPORT,
        actor=actor_for(viewer),
        detail={"rows": entries.count()},
        context=context,
    )
    return entries.iterator(chunk_size=2000)


@transaction.atomic
def optins_for_partner(
    *, partner_ods: str, since: datetime.datetime, actor: AuditActor, context: AuditContext
) -> list[str]:
    """NHS numbers of people who opted back in since a time and whose data the partner had sent.

    The partner re-sends their records. Who is listed is
    access.optin_shown_to_partner's rule. Side effects: one OPTOUT_VIEW event
    with how many were listed (never who).
    """
    numbers = [
        optin.nhs_number
        for optin in optins_since(since=since)
        if optin_shown_to_partner(partner_ods=partner_ods, removed_from=optin.source_ods)
    ]
    audit_event_record(
        action=AuditAction.OPTOUT_VIEW,
        actor=actor,
        detail={"opted_in_since": since.isoformat(), "listed": len(numbers)},
        context=context,
    )
    return numbers
