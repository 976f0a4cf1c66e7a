"""Sending notifications to subscribers' rest-hook endpoints: in order, signed, retried, audited.

Each POST carries one notification Bundle (backport.notification_bundle) and
an `X-Signature-SHA256` header: the hex HMAC-SHA256 of the exact body under
the subscription's secret, so the receiver can tell the body is ours and
whole. One sender per subscription at a time (a session advisory lock),
taking its waiting deliveries in event-number order; when a send fails, that
person's later notifications wait behind it (ordering per person) while
other people's go on. A failed send is retried with exponential backoff
(NOTIFY_BACKOFF_SECONDS doubling, capped); after NOTIFY_MAX_ATTEMPTS it is
dead-lettered (visible to operators in the admin, replayed from there) and
the person's later notifications go on. Every attempt is audited: what was
sent (event kind, number, content), to whom, and the answer.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
from typing import Any

import requests
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditActor, AuditSubject, audit_event_record
from sharedrecord import fhirjson
from sharedrecord.access import (
    basis_kind_routine,
    organisation_relationships,
    view_policy_for,
)
from sharedrecord.fhir_entries import entries_served_text
from sharedrecord.models import Entry
from sharedrecord.notifications.backport import (
    NotificationEvent,
    notification_bundle,
    topic_url,
)
from sharedrecord.notifications.models import (
    Delivery,
    DeliveryState,
    Event,
    PayloadContent,
    Subscription,
    SubscriptionStatus,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature-SHA256"
SENDER_LOCK = 7404
NOTIFIER = "notifications"
BATCH = 100


def deliveries_pending() -> dict[str, int]:
    """What waits to be sent, by channel, for the metrics (sharedrecord_notifications_pending).

    Only rest-hook is a channel that waits: the staff list is read, not sent.
    """
    return {"rest-hook": Delivery.objects.filter(state=DeliveryState.PENDING).count()}


def signature(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of a body under a subscription's secret (the signature header)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def fhir_base() -> str:
    """Where the read API serves what a notification names (FHIR_BASE_URL; set it in production).

    Without it the references are relative to the server (`/fhir/R4/...`).
    """
    return str(settings.FHIR_BASE_URL or "/fhir/R4").rstrip("/")


def subscription_url(subscription: Subscription) -> str:
    return f"{fhir_base()}/Subscription/{subscription.public_id}"


def _post(subscription: Subscription, bundle: dict[str, Any]) -> str:
    """POST one Bundle; "" on a 2xx, else a short reason code (never the answer's text)."""
    body = fhirjson.dumps(bundle).encode()  # the resources' decimals as sent
    try:
        response = requests.post(
            subscription.endpoint,
            data=body,
            headers={
                "Content-Type": "application/fhir+json",
                SIGNATURE_HEADER: signature(subscription.secret, body),
                "X-Subscription-Id": str(subscription.public_id),
            },
            timeout=settings.NOTIFY_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
    except requests.Timeout:
        return "timeout"
    except requests.RequestException:
        return "connection-failed"
    if 200 <= response.status_code < 300:
        return ""
    return f"http-{response.status_code}"


def _audit(
    subscription: Subscription, kind: str, failure: str, delivery: Delivery | None = None
) -> None:
    detail: dict[str, Any] = {
        "subscription": str(subscription.public_id),
        "client_id": subscription.client_id,
        "to": subscription.organisation.ods_code,
        "topic": subscription.kind,
        "type": kind,
        "content": subscription.content,
        "result": failure or "delivered",
    }
    subject = None
    if delivery is not None:
        detail |= {
            "event": str(delivery.event.public_id),
            "event_number": delivery.event_number,
            "restricted": delivery.restricted,
            "attempt": delivery.attempts,
        }
        patient = delivery.patient
        subject = AuditSubject(
            patient_id=patient.public_id, nhs_number=patient.nhs_number,
            gp_ods=patient.registered_gp_ods,
        )  # fmt: skip
    audit_event_record(
        action=AuditAction.NOTIFICATION_SENT,
        actor=AuditActor.system(NOTIFIER),
        outcome=AuditOutcome.FAILED if failure else AuditOutcome.SUCCESS,
        subject=subject,
        detail=detail,
        source_ods=[delivery.event.source_org.ods_code] if delivery is not None else [],
    )


def _bundle(
    subscription: Subscription, kind: str, events: list[NotificationEvent]
) -> dict[str, Any]:
    return notification_bundle(
        subscription_url=subscription_url(subscription),
        topic=topic_url(subscription.kind),
        status=subscription.status,
        kind=kind,
        since_start=subscription.events_since_start,
        events=events,
        now=timezone.now(),
    )


def notification_event_for(
    subscription: Subscription, delivery: Delivery, content: str
) -> NotificationEvent:
    """One delivery as a notification event (notification_events_for)."""
    return notification_events_for(subscription, [delivery], content)[0]


def notification_events_for(
    subscription: Subscription, deliveries: list[Delivery], content: str
) -> list[NotificationEvent]:
    """Deliveries as notification events, with the content this subscriber may have.

    A restricted item carries no focus and no resource (only that it exists);
    id-only names the entry by the id the read API serves it under;
    full-resource adds the entry as the read API would serve it to this
    subscriber's account (its policy's redactions applied; whether the item is
    restricted was decided by the policy when the event was dispatched). The
    entries are found in one query, and each person's relationships and
    served texts in one query each, however many of their events there are.
    """
    base = fhir_base()
    named = [d for d in deliveries if not d.restricted and content != PayloadContent.EMPTY]
    found = entries_by_source_key({_key(d) for d in named})
    texts: dict[int, str] = {}
    if content == PayloadContent.FULL_RESOURCE:
        for patient_deliveries in _by_person(named).values():
            patient = patient_deliveries[0].patient
            relationships = organisation_relationships(
                organisation=subscription.organisation, patient=patient
            )
            policy = view_policy_for(
                viewer=subscription.owner, basis_kind=basis_kind_routine(),
                relationships={r.kind for r in relationships},
            )  # fmt: skip
            ids = [found[_key(d)][0] for d in patient_deliveries if _key(d) in found]
            if ids:
                texts.update(entries_served_text(patient, ids, policy))
    events = []
    for delivery in deliveries:
        event = delivery.event
        patient_ref = f"{base}/Patient/{delivery.patient.public_id}"
        named_entry = not delivery.restricted and content != PayloadContent.EMPTY
        entry = found.get(_key(delivery)) if named_entry else None
        if entry is None:  # restricted, empty, or removed by its source since
            events.append(NotificationEvent(
                delivery.event_number, event.recorded_at, "", patient_ref, delivery.restricted,
                False,
            ))  # fmt: skip
            continue
        pk, entry_id = entry
        focus = patient_ref if event.resource_type == "Patient" else (
            f"{base}/{event.resource_type}/{entry_id}"
        )  # fmt: skip
        # Never quietly less than asked: a text not read is an error, as it was.
        resource = fhirjson.loads(texts[pk]) if content == PayloadContent.FULL_RESOURCE else None
        events.append(NotificationEvent(
            delivery.event_number, event.recorded_at, focus, patient_ref, False, event.abnormal,
            resource,
        ))  # fmt: skip
    return events


SourceKey = tuple[int, int, str, str]  # person, source organisation, resource type, source id


def entries_by_source_key(keys: set[SourceKey]) -> dict[SourceKey, tuple[int, str]]:
    """The entries events name (by person, source, type and source id), in one query.

    By key: the entry's pk and public id; an entry its source has removed is
    not there. One entry per key (entry_source_unique).
    """
    if not keys:
        return {}
    where = Q()
    for patient_id, source_org_id, resource_type, source_id in keys:
        where |= Q(
            patient_id=patient_id, source_org_id=source_org_id,
            resource_type=resource_type, source_id=source_id,
        )  # fmt: skip
    rows = Entry.objects.filter(where).values_list(
        "pk", "public_id", "patient_id", "source_org_id", "resource_type", "source_id"
    )
    return {
        (patient_id, org_id, kind, source_id): (pk, str(public_id))
        for pk, public_id, patient_id, org_id, kind, source_id in rows
    }


def event_source_key(event: Event) -> SourceKey:
    """The key of the entry an event is about (entries_by_source_key)."""
    return (event.patient_id, event.source_org_id, event.resource_type, event.source_id)


def _key(delivery: Delivery) -> SourceKey:
    return event_source_key(delivery.event)


def _by_person(deliveries: list[Delivery]) -> dict[int, list[Delivery]]:
    grouped: dict[int, list[Delivery]] = {}
    for delivery in deliveries:
        grouped.setdefault(delivery.patient_id, []).append(delivery)
    return grouped


def _backoff(attempts: int) -> datetime.timedelta:
    seconds = settings.NOTIFY_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0)
    return datetime.timedelta(seconds=min(seconds, settings.NOTIFY_BACKOFF_MAX_SECONDS))


def subscription_deliver(*, subscription_id: int) -> datetime.datetime | None:
    """Send a subscription's due notifications in order; return when to try again, if ever.

    Steps:
    1. Take the subscription's sender lock without waiting; if another worker
       holds it, it will see these deliveries (it looks again after letting go).
    2. Take the waiting deliveries in event-number order. A person with an
       earlier delivery waiting for its retry holds their later ones back.
    3. POST each (its own transaction with its audit event): sent, or its
       attempt counted and its retry set; dead-lettered after the last attempt.
    4. Let go of the lock, then look once more for work that arrived meanwhile.
    """
    while True:
        if not _try_lock(subscription_id):
            return None
        try:
            seen = _last_delivery_id(subscription_id)
            retry_at = _send_due(subscription_id)
        finally:
            _unlock(subscription_id)
        if not _arrived_since(subscription_id, seen):
            return retry_at


def _try_lock(subscription_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [SENDER_LOCK, subscription_id])
        return bool(cursor.fetchone()[0])


def _unlock(subscription_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [SENDER_LOCK, subscription_id])


def _last_delivery_id(subscription_id: int) -> int:
    last = (
        Delivery.objects.filter(subscription_id=subscription_id)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    return last or 0


def _arrived_since(subscription_id: int, seen: int) -> bool:
    """Whether a delivery was queued while this sender held the lock (its task was turned away)."""
    return Delivery.objects.filter(
        subscription_id=subscription_id, state=DeliveryState.PENDING, pk__gt=seen
    ).exists()


def _send_due(subscription_id: int) -> datetime.datetime | None:
    subscription = (
        Subscription.objects.select_related("owner", "owner__organisation", "organisation")
        .filter(pk=subscription_id)
        .first()
    )
    if subscription is None or subscription.status != SubscriptionStatus.ACTIVE:
        return None
    while True:
        pending = list(
            Delivery.objects.filter(subscription=subscription, state=DeliveryState.PENDING)
            .select_related("event", "event__source_org", "patient")
            .order_by("event_number")[:BATCH]
        )
        held: set[int] = set()
        sent_any = False
        retry_at: datetime.datetime | None = None
        for delivery in pending:
            if delivery.patient_id in held:
                continue
            if delivery.next_attempt_at > timezone.now():
                held.add(delivery.patient_id)
                retry_at = min(retry_at or delivery.next_attempt_at, delivery.next_attempt_at)
                continue
            if _send_one(subscription, delivery) or delivery.state == DeliveryState.DEAD:
                sent_any = True  # a dead letter no longer holds the person's later ones back
            else:
                held.add(delivery.patient_id)
                at = delivery.next_attempt_at
                retry_at = min(retry_at or at, at)
        if not sent_any or len(pending) < BATCH:
            return retry_at


def _send_one(subscription: Subscription, delivery: Delivery) -> bool:
    event = notification_event_for(subscription, delivery, subscription.content)
    failure = _post(subscription, _bundle(subscription, "event-notification", [event]))
    now = timezone.now()
    with transaction.atomic():
        delivery.attempts += 1
        if not failure:
            delivery.state, delivery.sent_at, delivery.last_error = DeliveryState.SENT, now, ""
            Subscription.objects.filter(pk=subscription.pk).update(last_sent_at=now)
        elif delivery.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
            delivery.state, delivery.last_error = DeliveryState.DEAD, failure
        else:
            delivery.next_attempt_at = now + _backoff(delivery.attempts)
            delivery.last_error = failure
        delivery.save(update_fields=["attempts", "state", "sent_at", "last_error",
                                     "next_attempt_at"])  # fmt: skip
        _audit(subscription, "event-notification", failure, delivery)
    if failure:
        logger.info("notification %s to subscription %s failed: %s",
                    delivery.event_number, subscription.public_id, failure)  # fmt: skip
    return not failure


def subscription_handshake(*, subscription_id: int) -> str:
    """Send the handshake; the subscription becomes active if the endpoint answers 2xx, else error.

    Returns the subscription's status afterwards. Audited like every send.
    """
    subscription = (
        Subscription.objects.select_related("organisation").filter(pk=subscription_id).first()
    )
    if subscription is None or subscription.status != SubscriptionStatus.REQUESTED:
        return subscription.status if subscription else ""
    failure = _post(subscription, _bundle(subscription, "handshake", []))
    with transaction.atomic():
        subscription.status = SubscriptionStatus.ERROR if failure else SubscriptionStatus.ACTIVE
        subscription.error = failure
        if not failure:
            subscription.last_sent_at = timezone.now()
        subscription.save(update_fields=["status", "error", "last_sent_at"])
        _audit(subscription, "handshake", failure)
    return subscription.status


def subscription_heartbeat(*, subscription_id: int) -> bool:
    """Send a heartbeat if nothing was sent within the subscription's heartbeat period."""
    subscription = (
        Subscription.objects.select_related("organisation").filter(pk=subscription_id).first()
    )
    if subscription is None or subscription.status != SubscriptionStatus.ACTIVE:
        return False
    if not subscription.heartbeat_seconds:
        return False
    period = datetime.timedelta(seconds=subscription.heartbeat_seconds)
    if subscription.last_sent_at and timezone.now() - subscription.last_sent_at < period:
        return False
    failure = _post(subscription, _bundle(subscription, "heartbeat", []))
    with transaction.atomic():
        if not failure:
            subscription.last_sent_at = timezone.now()
            subscription.save(update_fields=["last_sent_at"])
        _audit(subscription, "heartbeat", failure)
    return not failure


@transaction.atomic
def delivery_replay(*, delivery_ids: list[int], actor: AuditActor) -> list[int]:
    """An operator sends dead-lettered notifications again; returns their subscriptions' ids.

    Each goes back to waiting with its attempts reset, keeping its event
    number (the receiver orders by it). Side effects: one audit event each.
    """
    replayed = list(
        Delivery.objects.select_for_update()
        .select_related("subscription", "patient")
        .filter(pk__in=delivery_ids, state=DeliveryState.DEAD)
    )
    now = timezone.now()
    for delivery in replayed:
        delivery.state, delivery.attempts, delivery.next_attempt_at = DeliveryState.PENDING, 0, now
        delivery.save(update_fields=["state", "attempts", "next_attempt_at"])
        audit_event_record(
            action=AuditAction.SUBSCRIPTION_CHANGE,
            actor=actor,
            subject=AuditSubject(patient_id=delivery.patient.public_id),
            detail={
                "subscription": str(delivery.subscription.public_id),
                "replayed": delivery.event_number,
            },
        )
    return sorted({d.subscription_id for d in replayed})
