"""Partner system credentials, inbound messages (with their receipts) and the matching queue."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from sharedrecord import fhirjson
from sharedrecord.models import Organisation


class FeedCredential(models.Model):
    """One partner system's token. Only a hash is stored; the token is shown once."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="feed_credentials"
    )
    system = models.CharField(max_length=100, help_text="The sending system, e.g. 'EPR'.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["organisation__name", "system"]

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.system} at {self.organisation.ods_code} ({self.prefix}…, {state})"


class MessageKind(models.TextChoices):
    FHIR_JSON = "fhir-json", "FHIR Bundle (JSON)"
    FHIR_XML = "fhir-xml", "FHIR Bundle (XML)"
    HL7V2 = "hl7v2", "HL7 v2 message (ER7)"
    # FHIR Bulk Data's NDJSON: one resource a line; a file import's batch or an upload.
    FHIR_NDJSON = "fhir-ndjson", "FHIR resources (NDJSON)"


class MessageStatus(models.TextChoices):
    RECEIVED = "received", "Queued"
    PROCESSING = "processing", "Processing"
    DONE = "done", "Done"
    REJECTED = "rejected", "Rejected"
    # Processing kept failing (a fault on our side, not the sender's): the payload is kept
    # so an operator can replay the message once the fault is fixed.
    FAILED = "failed", "Failed"


class FeedMessage(models.Model):
    """An inbound message: stored and committed before the sender gets its receipt.

    The payload is cleared once processing finishes (its content then lives in
    the record, or was refused), so raw partner data is kept no longer than
    needed; `payload_sha256` still tells a redelivery from a different message.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    credential = models.ForeignKey(FeedCredential, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=MessageKind.choices)
    idempotency_key = models.CharField(max_length=200)
    payload = models.BinaryField(default=bytes)
    payload_sha256 = models.CharField(max_length=64)
    payload_bytes = models.PositiveIntegerField(default=0)
    entry_count = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=MessageStatus.choices, default=MessageStatus.RECEIVED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict)
    issues = models.JSONField(default=list)
    # The last failed attempt: stage, entry index, FHIR paths and the exception's class,
    # never its text (database errors quote values).
    failure = models.JSONField(default=dict, blank=True)
    # When a failed attempt may run again; the sweep leaves the message until then.
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("replay_feedmessage", "Can replay a failed feed message")]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "idempotency_key"], name="feed_message_idempotent"
            ),
        ]
        indexes = [
            models.Index(
                fields=["status", "started_at"],
                name="feed_message_stuck",
                condition=Q(status="processing"),
            ),
        ]

    def __str__(self) -> str:
        return f"Feed message {self.public_id} ({self.status})"


class ParkReason(models.TextChoices):
    NO_NHS_NUMBER = "no-nhs-number", "No NHS number"
    INVALID_NHS_NUMBER = "invalid-nhs-number", "NHS number fails the Modulus 11 check"
    CONFLICTING_NHS_NUMBERS = "conflicting-nhs-numbers", "Conflicting NHS numbers"
    DEMOGRAPHICS_CONFLICT = "demographics-conflict", "Demographics disagree with the record"
    UNKNOWN_PATIENT = "unknown-patient", "Refers to a patient this source never sent"


class ParkState(models.TextChoices):
    """Where a parked item stands: waiting, or the data quality officer's decision."""

    PARKED = "parked", "Waiting for a decision"
    FILED = "filed", "Filed to a person"
    REJECTED = "rejected", "Rejected"
    CORRECTION_REQUESTED = "correction-requested", "Sender asked to correct and re-send"
    # Filing met the opt-out gate: the person opted out, so nothing was stored.
    BLOCKED = "blocked", "Not stored: the person opted out"


class MatchQueueItem(models.Model):
    """An entry that could not be linked to a person with certainty: parked, never guessed.

    The entries one message parked for one person share a `group`: the data
    quality officer decides them together (ingestion/workbench.py). Once
    decided, the resource and its columns are cleared: filed, they live in
    the record; rejected, nothing of them is kept.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    group = models.UUIDField(default=uuid.uuid4, db_index=True, editable=False)
    message = models.ForeignKey(FeedMessage, on_delete=models.CASCADE, related_name="parked")
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    entry_index = models.PositiveIntegerField()
    resource_type = models.CharField(max_length=40)
    source_id = models.CharField(max_length=64)
    reason = models.CharField(max_length=32, choices=ParkReason.choices)
    # Kept for the data-quality reviewer; cleared by the opt-out purge when the
    # number it carries is opted out.
    nhs_number_sent = models.CharField(max_length=32, blank=True)
    # The source's Patient id an entry named when this source never sent that Patient.
    patient_reference = models.CharField(max_length=64, blank=True)
    # As the feed sent it, its decimals too (filing stores it).
    resource = models.JSONField(encoder=fhirjson.Encoder, decoder=fhirjson.Decoder)
    # The typed columns the parser gave (EntryData without the resource), so
    # filing stores exactly what the feed would have stored.
    entry_data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=24, choices=ParkState.choices, default=ParkState.PARKED)
    resolved_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # A code from the workbench's lists: what the sender is told (never free text).
    decision_code = models.CharField(max_length=40, blank=True)
    # The officer's own words: kept for governance, never sent to the sender.
    decision_note = models.CharField(max_length=500, blank=True)
    filed_patient_id = models.UUIDField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "matching queue item"
        indexes = [
            models.Index(
                fields=["organisation", "created_at"],
                name="match_queue_waiting",
                condition=Q(state="parked"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type} parked: {self.get_reason_display()}"


class ImportCheckpoint(models.Model):
    """How far `feed_import` got through one file for one sending system: its resume point.

    Keyed by the file's SHA-256, so the same content resumes wherever it lies and
    an edited file starts afresh. `lines_done` moves in the same transaction as
    the batch it covers, so a crash loses or repeats nothing. `counts` are the
    receipt counts so far; `problems` the rejected lines (line, reason code),
    the first PROBLEMS_KEPT of them; `parked` parked entries by reason.
    """

    PROBLEMS_KEPT = 1000

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    system = models.CharField(max_length=100)
    file_sha256 = models.CharField(max_length=64)
    file_name = models.CharField(max_length=255)
    total_lines = models.PositiveBigIntegerField(default=0)
    lines_done = models.PositiveBigIntegerField(default=0)
    counts = models.JSONField(default=dict)
    problems = models.JSONField(default=list)
    parked = models.JSONField(default=dict)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "system", "file_sha256"], name="import_checkpoint_file"
            ),
        ]

    def __str__(self) -> str:
        return f"Import of {self.file_name}: {self.lines_done} of {self.total_lines} lines"


class ParkedDigest(models.Model):
    """One organisation's daily digest of what its feeds parked, and why (no person).

    Written once a day by beat (ingestion.parked_digests_compose); shown to
    the organisation's data quality officers on the workbench. Counts only:
    entries parked that day by reason, cases decided that day by state, and
    cases still waiting (and overdue) at the end of it.
    """

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    parked = models.JSONField(default=dict)
    decided = models.JSONField(default=dict)
    waiting = models.PositiveIntegerField(default=0)
    overdue = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day", "organisation__name"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "day"], name="parked_digest_daily"),
        ]

    def __str__(self) -> str:
        return f"Parked digest of {self.organisation.ods_code} for {self.day}"

    @property
    def parked_in_words(self) -> list[tuple[str, int]]:
        """Entries parked that day, by reason in words."""
        return [(_label(ParkReason, code), n) for code, n in self.parked.items()]

    @property
    def decided_in_words(self) -> list[tuple[str, int]]:
        """Cases decided that day, by decision in words."""
        return [(_label(ParkState, code), n) for code, n in self.decided.items()]


def _label(choices: type[models.TextChoices], code: str) -> str:
    """A stored code's label; a code no longer in the choices shows as itself."""
    try:
        return str(choices(code).label)
    except ValueError:
        return code
