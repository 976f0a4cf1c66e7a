"""The in-app list: "Your patients: what changed since you last looked", per organisation.

Showing it is an audited service (STYLE.md section 4): the organisation's
notices, newest first, each asked of the access policy for this viewer's
role (access.notifications_shown_as, for everyone listed at once): shown,
shown only as "a new restricted item", or left out. The viewer's last look
moves on with each view.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.trail import AuditContext, audit_event_record
from sharedrecord.access import viewer_may_search
from sharedrecord.auditing import actor_for
from sharedrecord.models import User
from sharedrecord.notifications.models import EventKind, Notice, NoticeLook
from sharedrecord.notifications.subscriptions import notices_told

LIST_MAX = 100


@dataclass(frozen=True)
class NoticeItem:
    patient_id: str
    name: str  # "" for a restricted item: nothing of it is told
    kind: str
    kind_label: str
    occurred_at: datetime.datetime | None
    told_at: datetime.datetime
    restricted: bool
    abnormal: bool
    new: bool
    source: str


@dataclass(frozen=True)
class NoticeList:
    items: list[NoticeItem]
    last_looked_at: datetime.datetime | None
    kind: str
    only_new: bool


@transaction.atomic
def notices_view(
    *, viewer: User, kind: str = "", only_new: bool = False, context: AuditContext | None = None
) -> NoticeList:
    """The viewer's organisation's notices this viewer may be told of; an audited read.

    `kind` filters to one event kind (ignored if not one); `only_new` to
    those since the viewer last looked. Side effects: one audit event naming
    the people listed; the viewer's last look set to now.
    """
    if not viewer_may_search(viewer) or viewer.organisation is None:
        raise PermissionDenied("The notifications list needs a clinical or care role.")
    look = NoticeLook.objects.select_for_update().filter(user=viewer).first()
    last = look.looked_at if look else None
    notices = (
        Notice.objects.filter(organisation=viewer.organisation)
        .select_related("event", "event__patient", "event__source_org")
        .order_by("-created_at", "-pk")
    )
    if kind in EventKind.values:
        notices = notices.filter(event__kind=kind)
    else:
        kind = ""
    if only_new and last is not None:
        notices = notices.filter(created_at__gt=last)
    chosen = list(notices[: LIST_MAX * 2])
    told = notices_told(viewer=viewer, notices=chosen)
    items: list[NoticeItem] = []
    for notice in chosen:
        event = notice.event
        shown = told.get(notice.pk, "")
        if not shown:
            continue
        restricted = shown == "restricted"
        patient = event.patient
        items.append(
            NoticeItem(
                patient_id=str(patient.public_id),
                name=f"{patient.given_names} {patient.family_name}".strip(),
                kind=event.kind,
                kind_label="New restricted item" if restricted else EventKind(event.kind).label,
                occurred_at=None if restricted else event.occurred_at,
                told_at=notice.created_at,
                restricted=restricted,
                abnormal=event.abnormal and not restricted,
                new=last is None or notice.created_at > last,
                source="" if restricted else event.source_org.name,
            )
        )
        if len(items) == LIST_MAX:
            break
    now = timezone.now()
    NoticeLook.objects.update_or_create(user=viewer, defaults={"looked_at": now})
    audit_event_record(
        action=AuditAction.NOTIFICATIONS_VIEW,
        actor=actor_for(viewer),
        detail={
            "kind": kind,
            "only_new": only_new,
            "patients": sorted({item.patient_id for item in items}),
            "items": len(items),
        },
        context=context,
    )
    return NoticeList(items, last, kind, only_new)
