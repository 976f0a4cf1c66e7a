"""Processing a stored message: claim it, parse it, apply it and write its receipt."""

from __future__ import annotations

import datetime
import logging
import time
from math import inf

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditActor, PendingEvent, audit_event_record, audit_events_record
from ingestion.applying import bundle_apply, merge_apply
from ingestion.bulk import ndjson_message_finish
from ingestion.credentials import feed_actor
from ingestion.failures import attempt_failed, record_failure
from ingestion.fhir.bundle import parse_bundle
from ingestion.fhir.results import FeedRejected
from ingestion.hl7v2.convert import convert
from ingestion.hl7v2.datatypes import fhir_datetime
from ingestion.hl7v2.results import Converted, Hl7Header, Hl7Rejected
from ingestion.metrics import ACCEPT_TO_QUERYABLE_SECONDS
from ingestion.models import FeedMessage, MessageKind, MessageStatus
from ingestion.progress import RECEIPT_COUNTS, Outcome, Progress
from ingestion.receiving import media_of
from sharedrecord import fhirjson
from sharedrecord.access import organisation_is_pull_only, organisation_may_send_feeds
from sharedrecord.organisations import organisation_feed_seen

logger = logging.getLogger(__name__)


def feed_message_process(*, message_id: int) -> str:
    """Turn one stored message into record entries; safe to run again for the same message.

    Steps:
    1. Claim the message (RECEIVED -> PROCESSING) with a conditional update;
       if another worker has it, do nothing. A message whose workers died more
       than FEED_MAX_ATTEMPTS times is FAILED.
    2. Parse and validate (ingestion/fhir/). A message that cannot be read at
       all is REJECTED with its reason.
    3. Group entries by person. No NHS number, an invalid one or conflicting
       ones: parked in the matching queue, never guessed.
    4. In one transaction: per person (in NHS number order, so two workers
       never deadlock) take the person's lock, ask the opt-out gate, match or
       create, upsert each entry; apply deletes; write the receipt and the
       audit events.
    5. If anything fails, the transaction rolls back and the attempt is
       recorded with its stage and entry (never the exception's text): the
       message waits for another attempt (RETRYING) or, after the last,
       is FAILED, keeping its payload for an operator's replay.
    Returns the final status, RETRYING or "not-claimed".
    """
    with transaction.atomic():
        _commit_without_waiting_for_the_disk()
        claimed = FeedMessage.objects.filter(id=message_id, status=MessageStatus.RECEIVED).update(
            status=MessageStatus.PROCESSING,
            started_at=timezone.now(),
            attempts=F("attempts") + 1,
            retry_at=None,
        )
    if claimed != 1:
        return "not-claimed"
    progress = Progress()
    try:
        with transaction.atomic():
            _commit_without_waiting_for_the_disk()
            # Held until commit; a worker that dies drops it with its connection,
            # which is how the sweep tells a dead worker's message from a live one.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)",
                    [MESSAGE_LOCK_NAMESPACE, _lock_key(message_id)],
                )
            return _process_claimed(message_id, progress)
    except Exception as exc:  # recorded on the message and logged by class: never lost
        return attempt_failed(message_id=message_id, progress=progress, exc=exc)


MESSAGE_LOCK_NAMESPACE = 7402


def _commit_without_waiting_for_the_disk() -> None:
    """Let this transaction's commit return before its WAL reaches the disk.

    Safe for the claim and the processing of a stored message, and worth a
    disk flush (about 3 ms here) twice a message: the message itself was
    committed durably at receipt, before its sender heard 202 or AA. A
    PostgreSQL crash can lose at most the last moments' claims and results,
    whole (the audit events and receipt go with the entries they describe),
    leaving the message RECEIVED or PROCESSING for the sweep to queue again,
    and processing is idempotent. Nothing committed after this (an opt-out, an
    audited read) can outlive it: a durable commit flushes all the WAL before it.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO off")


def _lock_key(message_id: int) -> int:
    return message_id % 2_147_483_647


def _process_claimed(message_id: int, progress: Progress) -> str:
    message = FeedMessage.objects.select_related(
        "organisation", "credential", "credential__organisation"
    ).get(id=message_id)
    organisation = message.organisation
    actor = feed_actor(message.credential)
    if message.attempts > settings.FEED_MAX_ATTEMPTS:
        # Every earlier attempt ended with its worker gone (a failure is recorded otherwise).
        return record_failure(
            message=message,
            failure={"stage": "worker-lost", "entries": [], "expression": [], "error": ""},
        )
    converted = None
    try:
        if not organisation_may_send_feeds(organisation):
            raise FeedRejected(
                "agreement-inactive",
                "The organisation has no active data sharing agreement.",
                status=403,
            )
        if organisation_is_pull_only(organisation):
            raise FeedRejected(
                "pull-only", "The organisation is configured as pull-only.", status=403
            )
        if message.kind == MessageKind.FHIR_NDJSON:  # an NDJSON upload: ingestion/bulk.py
            return ndjson_message_finish(message=message, actor=actor, progress=progress)
        data, media = bytes(message.payload), media_of(message.kind)
        if message.kind == MessageKind.HL7V2:
            progress.at("convert")
            converted = _hl7_converted(data)
            data = fhirjson.dumps(converted.bundle).encode()
        progress.at("parse")
        bundle = parse_bundle(data, media, max_entries=settings.FEED_MAX_ENTRIES)
    except FeedRejected as rejected:
        _finish_rejected(message, actor, rejected)
        return MessageStatus.REJECTED
    as_of = _hl7_time(converted.header) if converted is not None else None
    # The message's audit events (each person's match decision, then its own)
    # go to the trail together, in one statement, with the receipt.
    events: list[PendingEvent] = []
    outcome = bundle_apply(
        message=message,
        bundle=bundle,
        organisation=organisation,
        progress=progress,
        as_of=as_of,
        audit_events=events,
    )
    if converted is not None:
        _hl7_issues(converted, outcome)
        for merge in converted.merges:  # A40: every PID/MRG pair, in order
            progress.at("merge")
            merge_apply(
                message=message,
                organisation=organisation,
                merge=merge,
                outcome=outcome,
                as_of=as_of,
            )
    progress.at("receipt")
    message.status = MessageStatus.DONE
    message.finished_at = timezone.now()
    message.counts = {k: outcome.counts.get(k, 0) for k in RECEIPT_COUNTS}
    if outcome.counts.get("merged"):
        message.counts["merged"] = outcome.counts["merged"]  # HL7 A40 only
    message.issues = outcome.issues
    message.payload = b""
    message.failure = {}
    message.save(update_fields=["status", "finished_at", "counts", "issues", "payload", "failure"])
    events.append(
        PendingEvent(
            action=AuditAction.FEED_PROCESSED,
            actor=actor,
            detail={"message": str(message.public_id), "counts": message.counts},
            source_ods=(organisation.ods_code,),
        )
    )
    audit_events_record(events=events)
    _feed_seen_after_commit(organisation.pk)
    _latency_after_commit(message)
    logger.info("feed message %s done: %s", message.public_id, message.counts)
    return MessageStatus.DONE


def _latency_after_commit(message: FeedMessage) -> None:
    """Observe accept-to-queryable once the entries are committed (readable by others)."""
    ods, kind, received_at = message.organisation.ods_code, message.kind, message.received_at

    def observe() -> None:
        seconds = (timezone.now() - received_at).total_seconds()
        ACCEPT_TO_QUERYABLE_SECONDS.labels(ods, kind).observe(max(0.0, seconds))

    transaction.on_commit(observe)


# When this process last noted each organisation's feed as seen (time.monotonic()).
_feed_seen_noted: dict[int, float] = {}
FEED_SEEN_EVERY_SECONDS = 30.0


def _feed_seen_after_commit(organisation_id: int) -> None:
    """Note the feed as seen once the message commits, at most every 30 s per process.

    organisation_feed_seen itself writes at most once a minute, but asking it
    costs a statement per message; the sources panel shows the time to the minute.
    """
    if time.monotonic() - _feed_seen_noted.get(organisation_id, -inf) < FEED_SEEN_EVERY_SECONDS:
        return

    def note() -> None:
        organisation_feed_seen(organisation_id=organisation_id)
        _feed_seen_noted[organisation_id] = time.monotonic()

    transaction.on_commit(note)


def _hl7_time(header: Hl7Header) -> datetime.datetime | None:
    """MSH-7, the message time: it orders a sender's removals (A11, A40) like its updates."""
    value = fhir_datetime(header.sent_at)
    if not value or "T" not in value:
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        return None


def _hl7_converted(payload: bytes) -> Converted:
    try:
        return convert(payload)
    except Hl7Rejected as rejected:  # accepted at receipt, so only if the rules changed
        raise FeedRejected("hl7v2-rejected", rejected.problem.message) from rejected


def _hl7_issues(converted: Converted, outcome: Outcome) -> None:
    for problem in converted.problems:
        outcome.issues.append({
            "entry": None,
            "severity": "error" if problem.severity == "E" else "warning",
            "code": f"hl7v2-{problem.code}",
            "diagnostics": problem.message,
            "expression": [problem.location] if problem.location else [],
        })  # fmt: skip


def _finish_rejected(message: FeedMessage, actor: AuditActor, rejected: FeedRejected) -> None:
    with transaction.atomic():
        message.status = MessageStatus.REJECTED
        message.finished_at = timezone.now()
        message.counts = {k: 0 for k in RECEIPT_COUNTS} | {"rejected": message.entry_count}
        message.issues = [
            {
                "entry": None,
                "severity": "error",
                "code": rejected.code,
                "diagnostics": rejected.message,
                "expression": [rejected.path],
            }
        ]
        message.payload = b""
        message.save(update_fields=["status", "finished_at", "counts", "issues", "payload"])
        audit_event_record(
            action=AuditAction.FEED_REJECTED,
            actor=actor,
            outcome=AuditOutcome.REJECTED,
            detail={"message": str(message.public_id), "reason": rejected.code},
            source_ods=[message.organisation.ods_code],
        )
    logger.info("feed message %s rejected: %s", message.public_id, rejected.code)
