"""Events, who was told of them, and partner systems' subscriptions.

Every table that names a person carries the patient key (docs/architecture.md,
"Scale"), and goes with the person when they opt out (CASCADE from Patient).
"""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from sharedrecord.models import Organisation, Patient, User
from sharedrecord.sealing import SealedTextField


class EventKind(models.TextChoices):
    ADMISSION = "admission", "Admitted to hospital"
    DISCHARGE = "discharge", "Discharged from hospital"
    AE_ATTENDANCE = "ae-attendance", "Attended A&E"
    DEATH = "death", "Died"
    RESULT = "result", "New result"
    DOCUMENT = "document", "New document"
    CARE_PLAN = "care-plan", "New or changed care plan"
    ALERT = "alert", "New or changed alert"


class Event(models.Model):
    """One fact the feeds stored about a person, written once (unique on person and fact).

    `fact` names the fact: the source's resource and what happened to it
    (an encounter's admission, a report's final result), or "death" for the
    person, whoever sent it. Its id orders events (the event number).
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    fact = models.CharField(max_length=200)
    source_org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    resource_type = models.CharField(max_length=40)
    source_id = models.CharField(max_length=64)
    abnormal = models.BooleanField(default=False)
    occurred_at = models.DateTimeField(null=True, blank=True)
    recorded_at = models.DateTimeField()
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["patient", "fact"], name="notification_event_once"),
        ]
        indexes = [
            models.Index(
                fields=["id"], name="notification_event_waiting", condition=Q(dispatched_at=None)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} event {self.public_id}"


class Notice(models.Model):
    """An event an organisation is told of in the in-app list, and why it may be told."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="notices")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    relationships = ArrayField(models.CharField(max_length=24), default=list)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "organisation"], name="notice_once"),
        ]
        indexes = [models.Index(fields=["organisation", "-created_at"], name="notice_org_recent")]

    def __str__(self) -> str:
        return f"notice of event {self.event_id} to organisation {self.organisation_id}"


class NoticeLook(models.Model):
    """When a member of staff last looked at their organisation's list."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="+")
    looked_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"last look of user {self.user_id}"


class PayloadContent(models.TextChoices):
    EMPTY = "empty", "empty"
    ID_ONLY = "id-only", "id-only"
    FULL_RESOURCE = "full-resource", "full-resource"


class SubscriptionStatus(models.TextChoices):
    REQUESTED = "requested", "requested"
    ACTIVE = "active", "active"
    ERROR = "error", "error"
    OFF = "off", "off"


class Subscription(models.Model):
    """A partner system's topic-based subscription (R4B Subscriptions Backport IG shape).

    The owner is the API client's account (its organisation and role decide
    what it is told). The signing secret is kept to sign each notification
    (HMAC-SHA256) and shown to the client once, when the subscription is made.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    client_id = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    endpoint = models.URLField(max_length=500)
    content = models.CharField(max_length=16, choices=PayloadContent.choices)
    secret = SealedTextField()  # sealed at rest (sharedrecord/sealing.py)
    heartbeat_seconds = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=12, choices=SubscriptionStatus.choices, default=SubscriptionStatus.REQUESTED
    )
    error = models.CharField(max_length=40, blank=True)
    events_since_start = models.BigIntegerField(default=0)
    created_at = models.DateTimeField()
    last_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organisation", "kind", "status"], name="sub_org_kind")]

    def __str__(self) -> str:
        return f"subscription {self.public_id} ({self.kind})"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Waiting to be sent"
    SENT = "sent", "Sent"
    DEAD = "dead", "Failed every attempt (dead letter)"


class Delivery(models.Model):
    """One event for one subscription: its event number, its attempts, its state."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    event_number = models.BigIntegerField()
    restricted = models.BooleanField(default=False)
    state = models.CharField(
        max_length=8, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscription", "event"], name="delivery_once"),
            models.UniqueConstraint(
                fields=["subscription", "event_number"], name="delivery_event_number"
            ),
        ]
        indexes = [
            models.Index(
                fields=["subscription", "event_number"],
                name="delivery_pending",
                condition=Q(state="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"notification {self.event_number} of subscription {self.subscription_id}"
