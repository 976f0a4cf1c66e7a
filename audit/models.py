"""The audit trail (one append-only, hash-chained, month-partitioned table) and its reviews.

The table is created in SQL (migration 0001), not by Django, because it is
partitioned by month and guarded by triggers; the models here only read it.
Being unmanaged also keeps it out of Django's test flush, so nothing in the
test suite can empty it either.
"""

from __future__ import annotations

import datetime
import json
import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone


class AuditAction(models.TextChoices):
    SIGN_IN = "sign-in", "Signed in"
    SIGN_IN_FAILED = "sign-in-failed", "Failed sign-in"
    SIGN_OUT = "sign-out", "Signed out"
    PATIENT_SEARCH = "patient-search", "Searched for a person"
    IDENTITY_VIEW = "identity-view", "Viewed who a person is (before the record)"
    ACCESS_BASIS = "access-basis", "Recorded the basis for access"
    BREAK_GLASS = "break-glass", "Emergency access (break glass)"
    RECORD_VIEW = "record-view", "Viewed a record"
    SECTION_VIEW = "section-view", "Viewed a record section"
    DOCUMENT_VIEW = "document-view", "Opened a document"
    API_READ = "api-read", "Read through the API"
    ACCESS_DENIED = "access-denied", "Access denied"
    FEED_RECEIVED = "feed-received", "Feed message received"
    FEED_PROCESSED = "feed-processed", "Feed message processed"
    FEED_REJECTED = "feed-rejected", "Feed message rejected"
    MATCH_DECISION = "match-decision", "Patient matching decision"
    MATCH_QUEUE_VIEW = "match-queue-view", "Viewed a parked entry (data quality)"
    IDENTITY_CHANGE = "identity-change", "Merged, linked or separated people (undone exactly)"
    RECORD_PURGED = "record-purged", "Record removed after opt-out"
    OPTOUT_CHANGE = "optout-change", "Opt-out registry changed"
    OPTOUT_VIEW = "optout-view", "Viewed the opt-out registry"
    OPTOUT_EXPORT = "optout-export", "Exported the opt-out registry"
    REGISTRATION_CHANGE = "registration-change", "Registered GP practice changed"
    ADMIN_CHANGE = "admin-change", "Administrative change"
    AUDIT_QUERY = "audit-query", "Searched the audit trail"
    AUDIT_EXPORT = "audit-export", "Exported the audit trail"
    AUDIT_REVIEW = "audit-review", "Reviewed an access"
    SUBJECT_ACCESS_REPORT = "subject-access-report", "Produced a subject access report"


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    DENIED = "denied", "Denied"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"


class ActorType(models.TextChoices):
    USER = "user", "Member of staff"
    SYSTEM = "system", "System"
    ANONYMOUS = "anonymous", "Not signed in"


class AuditEvent(models.Model):
    """One thing that happened. Never updated or deleted (PostgreSQL refuses both)."""

    id = models.BigIntegerField(primary_key=True)
    occurred_at = models.DateTimeField()
    stripe = models.SmallIntegerField()
    seq = models.BigIntegerField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    outcome = models.CharField(max_length=16, choices=AuditOutcome.choices)
    actor_type = models.CharField(max_length=12, choices=ActorType.choices)
    actor_id = models.UUIDField(null=True)
    actor_name = models.CharField(max_length=150)
    actor_role = models.CharField(max_length=32)
    actor_role_code = models.CharField(max_length=16)
    actor_org_ods = models.CharField(max_length=12)
    patient_id = models.UUIDField(null=True)
    nhs_number = models.CharField(max_length=10)
    patient_gp_ods = models.CharField(max_length=12)
    source_ods = ArrayField(models.CharField(max_length=12))
    purpose = models.CharField(max_length=40)
    detail = models.JSONField()
    request_id = models.CharField(max_length=64)
    client_address = models.GenericIPAddressField(null=True)

    class Meta:
        managed = False
        db_table = "audit_event"
        ordering = ["-occurred_at", "-id"]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.action} by {self.actor_name}"

    @property
    def flagged_for_review(self) -> bool:
        """Whether the access was flagged for a privacy officer's review (FLAGGED_FOR_REVIEW)."""
        return self.detail.get("needs_review") is True or self.detail.get("review") is True


# The same rule as AuditEvent.flagged_for_review, for queries. Rows written before
# the flag was renamed carry it as "review": true (each key has a partial index).
FLAGGED_FOR_REVIEW = models.Q(detail__needs_review=True) | models.Q(detail__review=True)


class AuditEventHolder(models.Model):
    """One organisation with a stake in one event: the record holders' index.

    A row for the person's GP practice and for every organisation whose data
    was shown, written by a trigger as the event is inserted (audit/sql.py,
    HOLDER_INDEX). It lets a record holder's view read its events newest
    first from one index, however few there are.
    """

    pk = models.CompositePrimaryKey("holder_ods", "occurred_at", "event_id")
    holder_ods = models.CharField(max_length=12)
    occurred_at = models.DateTimeField()
    event = models.ForeignKey(
        AuditEvent, on_delete=models.DO_NOTHING, db_constraint=False, related_name="holders"
    )

    class Meta:
        managed = False
        db_table = "audit_event_holder"

    def __str__(self) -> str:
        return f"{self.holder_ods} holds event {self.event_id}"


class AuditChainHead(models.Model):
    """The last link of each hash-chain stripe (see audit/trail.py)."""

    stripe = models.SmallIntegerField(primary_key=True)
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)

    class Meta:
        managed = False
        db_table = "audit_chain_head"

    def __str__(self) -> str:
        return f"stripe {self.stripe} at {self.seq}"


class AuditCheckpoint(models.Model):
    """How far one stripe of the chain reached when it was last verified, signed.

    Written by audit_checkpoint and audit_verify (audit/integrity.py) after
    they have walked the stripe up to `seq`; never changed (PostgreSQL refuses,
    audit/sql.py CHECKPOINTS). `signature` is an HMAC-SHA256 of
    signed_message() with AUDIT_CHECKPOINT_KEY, a key that the processes
    writing events do not hold, so nobody with only the database can move a
    checkpoint back to match a chain whose tail they removed.
    """

    id = models.BigAutoField(primary_key=True)
    taken_at = models.DateTimeField()
    stripe = models.SmallIntegerField()
    seq = models.BigIntegerField()
    event_id = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    events = models.BigIntegerField()
    signature = models.CharField(max_length=64)

    class Meta:
        managed = False
        db_table = "audit_checkpoint"
        ordering = ["stripe", "-seq", "-id"]

    def __str__(self) -> str:
        return f"checkpoint of stripe {self.stripe} at {self.seq}"

    def signed_message(self) -> bytes:
        """The bytes the signature covers: every field but the row's own id."""
        return checkpoint_message(
            taken_at=self.taken_at,
            stripe=self.stripe,
            seq=self.seq,
            event_id=self.event_id,
            hash=self.hash,
            events=self.events,
        )


def checkpoint_message(
    *, taken_at: datetime.datetime, stripe: int, seq: int, event_id: int, hash: str, events: int
) -> bytes:
    """The canonical form of a checkpoint, as signed and as checked."""
    fields = {
        "taken_at": taken_at.astimezone(datetime.UTC).isoformat(timespec="microseconds"),
        "stripe": stripe,
        "seq": seq,
        "event_id": event_id,
        "hash": hash,
        "events": events,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


class ReviewOutcome(models.TextChoices):
    JUSTIFIED = "justified", "Justified"
    NOT_JUSTIFIED = "not-justified", "Not justified"
    REFERRED = "referred", "Referred (for example to the Caldicott Guardian)"


# Outcomes that close a review; a referred access stays in the queue until one is recorded.
CLOSING_OUTCOMES = (ReviewOutcome.JUSTIFIED, ReviewOutcome.NOT_JUSTIFIED)


class AccessReview(models.Model):
    """A governance officer's finding on one flagged access (break-glass or self-claimed).

    Written once through audit.governance.access_review_record, never changed:
    a later finding (after a referral) is a new row, and the latest one stands.
    The event is named by id and time, the trail's partitioned primary key.
    PostgreSQL refuses UPDATE, DELETE and TRUNCATE (audit/sql.py), and the
    AUDIT_REVIEW event written with each finding carries a digest of it, so
    audit_verify finds a finding changed, removed or added behind the
    application's back. Unmanaged since then, like the trail: Django's test
    flush would otherwise try to empty it. The reviewer is a plain column (no
    foreign key in the database) for the same reason; PROTECT still stops
    Django deleting a reviewer.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event_id = models.BigIntegerField(db_index=True)
    event_occurred_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=ReviewOutcome.choices)
    note = models.TextField(max_length=2000)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    reviewer_name = models.CharField(max_length=150)
    reviewed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        managed = False
        db_table = "audit_accessreview"
        ordering = ["-reviewed_at", "-id"]

    def __str__(self) -> str:
        return f"review of event {self.event_id}: {self.outcome}"
