"""Fanning events out: who is told of each (access.notification_recipients), and how.

One dispatcher at a time (an advisory lock), taking waiting events in event
order, so each subscription numbers its notifications in the order the facts
were stored, and a person's notifications are never numbered out of order.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import connection, transaction
from django.utils import timezone

from sharedrecord.access import notification_recipients, notification_shown_as
from sharedrecord.models import Entry, Organisation
from sharedrecord.notifications.models import (
    Delivery,
    Event,
    Notice,
    Subscription,
    SubscriptionStatus,
)

logger = logging.getLogger(__name__)

DISPATCH_LOCK = (7403, 0)
# Small batches: a batch's deliveries are queued only when it commits, so a big one
# held every notification in it back for the time the whole batch took.
DISPATCH_BATCH = 20


def notification_events_dispatch() -> int:
    """Fan out the waiting events; return how many were dispatched. Safe to run at any time.

    Per event, in event order, in one transaction per batch:
    1. Find the entry the event is about; if the source has removed it since,
       nobody is told (the event is marked dispatched).
    2. Ask access.notification_recipients who is told: the registered
       practice, and organisations with a relationship in the feeds and an
       active agreement.
    3. Each such organisation gets a Notice (its in-app list; each viewer's
       role is asked again when the list is shown).
    4. Each active subscription of theirs for this kind gets a Delivery if its
       account's role may see the item ("restricted": it is told only that
       there is a new restricted item), numbered by the subscription's counter.
    After commit, the subscriptions with new deliveries are queued for sending.

    One dispatcher at a time, without waiting: a task that finds another
    dispatching returns at once (a feed worker never waits here), and the
    dispatcher looks again after each commit until nothing waits, so an event
    committed while it worked is never left behind. A person's events are
    numbered in the order they were stored (their writes are serialised by the
    person's lock, so their ids are in commit order).
    """
    total = 0
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", list(DISPATCH_LOCK))
                if not cursor.fetchone()[0]:
                    return total
            events = list(
                Event.objects.filter(dispatched_at=None)
                .select_related("patient", "source_org")
                .order_by("id")[:DISPATCH_BATCH]
            )
            if not events:
                return total
            touched: set[int] = set()
            # A person's events of one message share their recipients: asked once.
            recipients: dict[tuple[int, int], dict[Organisation, list[str]]] = {}
            for event in events:
                key = (event.patient_id, event.source_org_id)
                if key not in recipients:
                    recipients[key] = notification_recipients(
                        patient=event.patient, source_org=event.source_org
                    )
                touched |= _dispatch_one(event, recipients[key])
            Event.objects.filter(pk__in=[e.pk for e in events]).update(dispatched_at=timezone.now())
            transaction.on_commit(partial(_queue_sending, sorted(touched)))
        total += len(events)


def _dispatch_one(event: Event, told: dict[Organisation, list[str]]) -> set[int]:
    now = timezone.now()
    entry_id = (
        Entry.objects.filter(
            patient=event.patient,
            source_org=event.source_org,
            resource_type=event.resource_type,
            source_id=event.source_id,
        )
        .values_list("pk", flat=True)
        .first()
    )
    if entry_id is None:
        return set()
    if not told:
        return set()
    Notice.objects.bulk_create(
        [
            Notice(
                event=event,
                patient=event.patient,
                organisation=organisation,
                relationships=kinds,
                created_at=now,
            )
            for organisation, kinds in told.items()
        ],
        ignore_conflicts=True,
    )
    by_org = {organisation.pk: kinds for organisation, kinds in told.items()}
    subscriptions = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("owner", "owner__organisation")
        .filter(organisation_id__in=by_org, kind=event.kind, status=SubscriptionStatus.ACTIVE)
        .order_by("pk")
    )
    touched: set[int] = set()
    for subscription in subscriptions:
        shown = notification_shown_as(
            viewer=subscription.owner,
            patient=event.patient,
            entry_id=entry_id,
            relationships=by_org[subscription.organisation_id],
        )
        if not shown:
            continue
        subscription.events_since_start += 1
        subscription.save(update_fields=["events_since_start"])
        Delivery.objects.create(
            subscription=subscription, event=event, patient=event.patient,
            event_number=subscription.events_since_start, restricted=shown == "restricted",
            next_attempt_at=now, created_at=now,
        )  # fmt: skip
        touched.add(subscription.pk)
    return touched


def _queue_sending(subscription_ids: list[int]) -> None:
    from sharedrecord.notifications.tasks import subscription_deliver_task

    for subscription_id in subscription_ids:
        try:
            subscription_deliver_task.apply_async((subscription_id,), retry=False)
        except Exception:  # the sweep sends what is waiting
            logger.warning("delivery for subscription %s not queued", subscription_id)
