"""Partner systems' subscriptions: make, read, status, catch up ($events), and the sweep."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from audit.models import AuditAction
from audit.trail import (
    AuditActor,
    AuditSubject,
    PendingEvent,
    audit_event_record,
    audit_events_record,
)
from sharedrecord.access import notifications_shown_as
from sharedrecord.models import User
from sharedrecord.notifications.backport import NotificationEvent
from sharedrecord.notifications.delivery import (
    entries_by_source_key,
    event_source_key,
    notification_events_for,
)
from sharedrecord.notifications.models import (
    Delivery,
    DeliveryState,
    Event,
    Notice,
    PayloadContent,
    Subscription,
    SubscriptionStatus,
)

MAX_HEARTBEAT_SECONDS = 86_400
EVENTS_PAGE_MAX = 100


@dataclass(frozen=True)
class SubscriptionRequest:
    """A Subscription as a client asked for it, parsed at the edge (fhir.py)."""

    kind: str
    endpoint: str
    content: str
    heartbeat_seconds: int


def endpoint_acceptable(url: str) -> bool:
    """An absolute https URL (http too when NOTIFY_ALLOW_HTTP), with no credentials in it."""
    parts = urlsplit(url)
    schemes = ("https", "http") if settings.NOTIFY_ALLOW_HTTP else ("https",)
    return parts.scheme in schemes and bool(parts.hostname) and not parts.username


@transaction.atomic
def subscription_create(
    *, owner: User, client_id: str, request: SubscriptionRequest, actor: AuditActor
) -> Subscription:
    """Record a requested subscription and queue its handshake (active once the endpoint answers).

    The owner is the API client's account: its organisation is who is told,
    its role what. Side effects: one audit event; the handshake after commit.
    """
    if owner.organisation is None:
        raise ValidationError("This account belongs to no organisation.")
    if not endpoint_acceptable(request.endpoint):
        raise ValidationError("channel.endpoint must be an absolute https URL.")
    subscription = Subscription(
        owner=owner,
        organisation=owner.organisation,
        client_id=client_id[:100],
        kind=request.kind,
        endpoint=request.endpoint,
        content=request.content,
        secret=secrets.token_hex(32),
        heartbeat_seconds=request.heartbeat_seconds,
        created_at=timezone.now(),
    )
    subscription.full_clean()
    subscription.save()
    audit_event_record(
        action=AuditAction.SUBSCRIPTION_CHANGE,
        actor=actor,
        detail={
            "subscription": str(subscription.public_id),
            "topic": subscription.kind,
            "content": subscription.content,
            "change": "created",
        },
    )
    transaction.on_commit(lambda: _queue_handshake(subscription.pk))
    return subscription


def _queue_handshake(subscription_id: int) -> None:
    from sharedrecord.notifications.tasks import subscription_handshake_task

    subscription_handshake_task.apply_async((subscription_id,), retry=False)


def subscription_get(*, owner: User, public_id: str) -> Subscription | None:
    """One of this account's organisation's subscriptions; None alike for others' and unknown."""
    return (
        Subscription.objects.select_related("organisation", "owner", "owner__organisation")
        .filter(public_id=public_id, organisation=owner.organisation)
        .first()
    )


@transaction.atomic
def subscription_events(
    *,
    subscription: Subscription,
    since: int | None,
    until: int | None,
    content: str,
    actor: AuditActor,
) -> list[NotificationEvent]:
    """The subscription's past notifications by event number ($events), to catch up.

    Whatever their state (sent, waiting, dead-lettered), at most
    EVENTS_PAGE_MAX, with the content asked for, but never more than the
    subscription's own (a restricted item stays restricted). Side effects:
    one audit event per event returned (a restricted one says only that it
    happened), all written in two statements.
    """
    deliveries = Delivery.objects.filter(subscription=subscription).select_related(
        "event", "event__source_org", "patient"
    )
    if since is not None:
        deliveries = deliveries.filter(event_number__gte=since)
    if until is not None:
        deliveries = deliveries.filter(event_number__lte=until)
    if content not in PayloadContent.values or (
        content == PayloadContent.FULL_RESOURCE and subscription.content != content
    ):
        content = subscription.content
    chosen = list(deliveries.order_by("event_number")[:EVENTS_PAGE_MAX])
    events = notification_events_for(subscription, chosen, content)
    audit_events_record(
        events=[
            PendingEvent(
                action=AuditAction.NOTIFICATION_SENT,
                actor=actor,
                subject=AuditSubject(
                    patient_id=delivery.patient.public_id,
                    nhs_number=delivery.patient.nhs_number,
                    gp_ods=delivery.patient.registered_gp_ods,
                ),
                detail={
                    "subscription": str(subscription.public_id),
                    "type": "query-event",
                    "event_number": delivery.event_number,
                    "content": content,
                    "restricted": delivery.restricted,
                },
                source_ods=(delivery.event.source_org.ods_code,),
            )
            for delivery in chosen
        ]
    )
    return events


def notifications_sweep() -> None:
    """The periodic catch-all: waiting events, due deliveries, handshakes left, heartbeats."""
    from sharedrecord.notifications.delivery import subscription_heartbeat
    from sharedrecord.notifications.dispatch import notification_events_dispatch
    from sharedrecord.notifications.tasks import (
        subscription_deliver_task,
        subscription_handshake_task,
    )

    if Event.objects.filter(dispatched_at=None).exists():
        notification_events_dispatch()
    due = (
        Delivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=timezone.now())
        .values("subscription_id")
        .annotate(first=Min("event_number"))
    )
    for row in due:
        subscription_deliver_task.delay(row["subscription_id"])
    for subscription_id in Subscription.objects.filter(
        status=SubscriptionStatus.REQUESTED
    ).values_list("pk", flat=True):
        subscription_handshake_task.delay(subscription_id)
    for subscription_id in Subscription.objects.filter(
        status=SubscriptionStatus.ACTIVE, heartbeat_seconds__gt=0
    ).values_list("pk", flat=True):
        subscription_heartbeat(subscription_id=subscription_id)


def notices_told(*, viewer: User, notices: list[Notice]) -> dict[int, str]:
    """What a member of staff is told of each notice in the in-app list (the access policy).

    By notice id: "item", "restricted" or nothing. The relationships are those
    the feeds showed when the organisation was told. A few queries, however
    many people are listed: their entries found in one query, then two for
    each set of relationships the notices were told under.
    """
    if not notices:
        return {}
    entry_of = entries_by_source_key({event_source_key(n.event) for n in notices})
    groups: dict[tuple[str, ...], list[tuple[int, int, int]]] = {}
    for notice in notices:
        entry = entry_of.get(event_source_key(notice.event))
        if entry is not None:
            relationships = tuple(sorted(notice.relationships))
            groups.setdefault(relationships, []).append(
                (notice.pk, notice.event.patient_id, entry[0])
            )
    told: dict[int, str] = {}
    for relationships, listed in groups.items():
        shown = notifications_shown_as(
            viewer=viewer,
            entries={(patient_id, entry_id) for _, patient_id, entry_id in listed},
            relationships=relationships,
        )
        for notice_id, _, entry_id in listed:
            if entry_id in shown:
                told[notice_id] = shown[entry_id]
    return told
