"""Sending to a real receiver on localhost: dead letters and replay, order per person, handshakes
and heartbeats (the sender called here; test_subscriptions_e2e.py runs it in a real worker)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone
from oauth2_provider.models import Application

from audit.trail import AuditActor
from ingestion.models import MessageKind
from sharedrecord.clients import api_client_register
from sharedrecord.metrics import _pending_counters
from sharedrecord.models import User
from sharedrecord.notifications.delivery import (
    deliveries_pending,
    delivery_replay,
    signature,
    subscription_deliver,
    subscription_handshake,
    subscription_heartbeat,
)
from sharedrecord.notifications.dispatch import notification_events_dispatch
from sharedrecord.notifications.models import Delivery, Subscription
from tests.factories import feed, feed_kind, make_credential, next_nhs_number, partner
from tests.notifications.feeds import builder, encounter, report_with_decimals
from tests.notifications.receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def make_subscription(
    receiver: Receiver,
    *,
    status: str = "active",
    kind: str = "admission",
    content: str = "id-only",
    **fields: Any,
) -> Subscription:
    """A subscription of the practice's partner system (its service account) to a topic."""
    issued = api_client_register(name="GP system", grant="client-credentials",
                                 organisation=partner("Z81001"), role="gp")  # fmt: skip
    owner = User.objects.select_related("organisation").get(
        pk=Application.objects.get(client_id=issued.client_id).user_id
    )
    assert owner.organisation is not None
    return Subscription.objects.create(
        owner=owner, organisation=owner.organisation, client_id=issued.client_id,
        kind=kind, endpoint=receiver.url, content=content, secret="s" * 64,
        status=status, created_at=timezone.now(), **fields,
    )  # fmt: skip


def two_admissions(number: str) -> None:
    feed(make_credential(partner("Z81001"))[0], builder(number, "Z81001", "g1").bundle())
    hospital = builder(number, "ZAC01", "a1")
    hospital.add("Encounter", encounter("IMP", "in-progress"))
    hospital.add("Encounter", encounter("IMP", "in-progress"))
    feed(make_credential(partner("ZAC01"))[0], hospital.bundle())
    notification_events_dispatch()


def test_a_failing_notification_is_dead_lettered_then_replayed(
    receiver: Receiver, settings: Any
) -> None:
    settings.NOTIFY_MAX_ATTEMPTS, settings.NOTIFY_BACKOFF_SECONDS = 2, 0
    subscription = make_subscription(receiver)
    two_admissions(next_nhs_number())
    receiver.failing = 100
    for _ in range(3):  # the first twice; then the person's second, which waited, twice
        subscription_deliver(subscription_id=subscription.pk)
    states = list(Delivery.objects.order_by("event_number").values_list("state", "last_error"))
    assert states == [("dead", "http-503"), ("dead", "http-503")]
    receiver.failing = 0
    dead = list(Delivery.objects.order_by("event_number").values_list("pk", flat=True))
    assert delivery_replay(delivery_ids=dead, actor=AuditActor.system("test")) == [subscription.pk]
    subscription_deliver(subscription_id=subscription.pk)
    assert [r.events[0]["number"] for r in receiver.of_type("event-notification")] == [1, 2]
    assert set(Delivery.objects.values_list("state", flat=True)) == {"sent"}


def test_a_persons_later_notification_waits_behind_a_failed_one(
    receiver: Receiver, settings: Any
) -> None:
    settings.NOTIFY_BACKOFF_SECONDS = 60
    subscription = make_subscription(receiver)
    two_admissions(next_nhs_number())
    receiver.failing = 1
    retry_at = subscription_deliver(subscription_id=subscription.pk)
    assert retry_at is not None
    assert retry_at > timezone.now()
    assert receiver.received == []
    assert list(Delivery.objects.order_by("event_number").values_list("state", flat=True)) == [
        "pending", "pending",
    ]  # fmt: skip
    Delivery.objects.update(next_attempt_at=timezone.now())
    subscription_deliver(subscription_id=subscription.pk)
    assert [r.events[0]["number"] for r in receiver.of_type("event-notification")] == [1, 2]


def test_the_metrics_count_notifications_waiting_to_be_sent(
    receiver: Receiver, settings: Any
) -> None:
    settings.NOTIFY_BACKOFF_SECONDS = 60
    subscription = make_subscription(receiver)
    two_admissions(next_nhs_number())
    assert deliveries_pending() == {"rest-hook": 2}
    receiver.failing = 1
    subscription_deliver(subscription_id=subscription.pk)
    assert deliveries_pending() == {"rest-hook": 2}  # waiting behind the retry
    Delivery.objects.update(next_attempt_at=timezone.now())
    subscription_deliver(subscription_id=subscription.pk)
    assert deliveries_pending() == {"rest-hook": 0}
    assert deliveries_pending in _pending_counters  # what GET /metrics reports


def test_every_notification_is_signed_with_the_subscriptions_secret(receiver: Receiver) -> None:
    subscription = make_subscription(receiver)
    two_admissions(next_nhs_number())
    subscription_deliver(subscription_id=subscription.pk)
    for received in receiver.received:
        assert received.headers["X-Signature-SHA256"] == signature("s" * 64, received.body)
        assert received.headers["X-Subscription-Id"] == str(subscription.public_id)


def test_a_full_resource_notification_carries_its_decimals_as_sent(receiver: Receiver) -> None:
    # The resource was the served text read back as floats and written again: 5.1.
    subscription = make_subscription(receiver, kind="result", content="full-resource")
    number = next_nhs_number()
    # The practice's own record makes the person its patient: it is told of their results.
    feed(make_credential(partner("Z81001"))[0], builder(number, "Z81001", "g1").bundle())
    hospital = make_credential(partner("ZAC01"))[0]
    assert feed_kind(hospital, MessageKind.FHIR_JSON, report_with_decimals(number)).status == "done"
    notification_events_dispatch()
    subscription_deliver(subscription_id=subscription.pk)
    (sent,) = [r for r in receiver.received if '"DiagnosticReport"' in r.body.decode()]
    text = sent.body.decode().replace(" ", "")
    assert '"valueQuantity":{"unit":"mmol/L","value":5.10}' in text  # jsonb's key order
    assert '"low":{"value":3.50}' in text


def test_the_handshake_makes_a_subscription_active_or_an_error(receiver: Receiver) -> None:
    accepted = make_subscription(receiver, status="requested")
    assert subscription_handshake(subscription_id=accepted.pk) == "active"
    assert receiver.of_type("handshake")[0].status["status"] == "requested"
    receiver.failing = 1
    refused = make_subscription(receiver, status="requested")
    assert subscription_handshake(subscription_id=refused.pk) == "error"
    refused.refresh_from_db()
    assert refused.error == "http-503"


def test_a_quiet_subscription_gets_a_heartbeat(receiver: Receiver) -> None:
    quiet = make_subscription(receiver, heartbeat_seconds=60,
                              last_sent_at=timezone.now() - datetime.timedelta(minutes=5))  # fmt: skip
    assert subscription_heartbeat(subscription_id=quiet.pk)
    assert len(receiver.of_type("heartbeat")) == 1
    # Within its period, no second one.
    assert not subscription_heartbeat(subscription_id=quiet.pk)
