"""Failed processing attempts: where each failed, the retry delay and the receipt's text."""

from __future__ import annotations

import datetime
import logging
from typing import Any, Literal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditActor, audit_event_record
from ingestion.credentials import INGESTION
from ingestion.fhir.entries import bundle_resources, resources_as_sent
from ingestion.fhir.validation import validate_resource
from ingestion.hl7v2.convert import convert
from ingestion.hl7v2.results import Hl7Rejected
from ingestion.models import FeedMessage, MessageKind, MessageStatus
from ingestion.progress import RECEIPT_COUNTS, Progress
from ingestion.receiving import bad_character_path, media_of
from sharedrecord import fhirjson

logger = logging.getLogger(__name__)


RETRYING = "retrying"
RETRY_BASE_SECONDS = 5


class FeedProcessingInterrupted(Exception):
    """Processing failed and the failure could not be recorded (the database went away).

    Its text names the message and stage only; the message stays claimed until
    the sweep hands it back.
    """


def attempt_failed(*, message_id: int, progress: Progress, exc: Exception) -> str:
    """Record a failed attempt: where it failed, and the exception's class, never its text.

    PostgreSQL's error text quotes the values it refused, so neither the
    receipt, the audit trail, the log nor Celery's result store sees it.
    """
    stage, error = progress.stage, type(exc).__name__
    try:
        if not connection.is_usable():
            connection.close()  # a lost session: the next query opens a new one
        with transaction.atomic():
            message = (
                FeedMessage.objects.select_for_update()
                .select_related("organisation")
                .filter(id=message_id)
                .first()
            )
            if message is None or message.status != MessageStatus.PROCESSING:
                # Committed before the failure (an on-commit step), or handed on by the sweep.
                return message.status if message is not None else "not-claimed"
            entries, expression = _failure_where(message, progress)
            failure = {"stage": stage, "entries": entries, "expression": expression,
                       "error": error}  # fmt: skip
            return record_failure(message=message, failure=failure)
    except Exception:
        # Not logger.exception: the traceback would carry the exception's text.
        logger.error(
            "feed message #%s: attempt failed at stage %s (%s) and could not be recorded; "
            "the sweep will hand it back",
            message_id,
            stage,
            error,
        )
        raise FeedProcessingInterrupted(
            f"message #{message_id} failed at stage {stage} ({error})"
        ) from None


def record_failure(*, message: FeedMessage, failure: dict[str, Any]) -> str:
    """Save a failed attempt on the message: another attempt later, or FAILED after the last."""
    now = timezone.now()
    attempt, maximum = message.attempts, settings.FEED_MAX_ATTEMPTS
    failure = {**failure, "attempt": attempt}
    message.failure = failure
    if attempt < maximum:
        message.status = MessageStatus.RECEIVED
        message.retry_at = now + datetime.timedelta(seconds=feed_retry_delay(attempt=attempt))
        message.save(update_fields=["status", "failure", "retry_at"])
        logger.warning(
            "feed message %s: attempt %s of %s failed at stage %s (%s); it will be retried",
            message.public_id, attempt, maximum, failure["stage"], failure["error"] or "-",
        )  # fmt: skip
        return RETRYING
    message.status = MessageStatus.FAILED
    message.finished_at = now
    message.retry_at = None
    message.counts = dict.fromkeys(RECEIPT_COUNTS, 0)
    message.issues = [failure_issue(failure, final=True)]
    message.save(update_fields=["status", "failure", "retry_at", "finished_at", "counts", "issues"])
    audit_event_record(
        action=AuditAction.FEED_REJECTED,
        actor=AuditActor.system(INGESTION, org_ods=message.organisation.ods_code),
        outcome=AuditOutcome.FAILED,
        detail={
            "message": str(message.public_id),
            "reason": "processing-failed",
            "stage": failure["stage"],
            "entries": failure["entries"],
            "error": failure["error"],
            "attempts": attempt,
        },
        source_ods=[message.organisation.ods_code],
    )
    logger.error(
        "feed message %s failed at stage %s after %s attempts (%s); it waits for a replay",
        message.public_id, failure["stage"], attempt, failure["error"] or "worker lost",
    )  # fmt: skip
    return MessageStatus.FAILED


def feed_retry_delay(*, attempt: int) -> int:
    """Seconds before the next attempt after `attempt` failed ones: 5, 10, 20 ... at most 300."""
    return int(min(300, RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1)))


def feed_message_retry_delay(*, message_id: int) -> float:
    """Seconds until a message waiting after a failed attempt may run again."""
    retry_at = FeedMessage.objects.filter(id=message_id).values_list("retry_at", flat=True).first()
    if retry_at is None:
        return float(RETRY_BASE_SECONDS)
    return max(0.0, (retry_at - timezone.now()).total_seconds())


STAGE_TEXT = {
    "start": "starting",
    "convert": "converting the HL7 v2 message",
    "parse": "reading and validating the entries",
    "match": "matching the person",
    "gate": "checking the opt-out registry",
    "upsert": "storing the entries",
    "remove": "removing an entry",
    "merge": "merging two people",
    "receipt": "writing the receipt",
    "worker-lost": "processing (the worker stopped)",
}


def failure_issue(failure: dict[str, Any], *, final: bool, maximum: int = 0) -> dict[str, Any]:
    """The receipt's issue for a failed attempt: stage, entries and paths, never data."""
    stage = str(failure.get("stage", ""))
    entries = [int(i) for i in failure.get("entries", [])]
    where = ""
    if len(entries) == 1:
        where = f" at entry {entries[0]}"
    elif entries:
        where = " in entries " + ", ".join(str(i) for i in entries[:10])
    error = f" ({failure['error']})" if failure.get("error") else ""
    doing = STAGE_TEXT.get(stage, stage)
    if final:
        text = (
            f"Processing failed while {doing}{where}{error} in all {failure.get('attempt')} "
            "attempts. The fault is ours; the platform team has been alerted and will "
            "replay the message."
        )
    else:
        text = (
            f"Attempt {failure.get('attempt')} of {maximum} failed while {doing}{where}"
            f"{error}; it will be tried again."
        )
    return {
        "entry": None,
        "severity": "error" if final else "warning",
        "code": "processing-failed" if final else "attempt-failed",
        "diagnostics": text,
        "expression": list(failure.get("expression", [])),
    }


def _failure_where(message: FeedMessage, progress: Progress) -> tuple[list[int], list[str]]:
    """Which entries a failed attempt was working on, and the FHIR paths to name.

    A string PostgreSQL cannot store is found by its path. A failure while
    parsing is traced to the first entry that fails validation on its own.
    """
    found: list[tuple[int, Any]] = [(e.index, e.resource) for e in progress.entries]
    media: Literal["json", "xml"] = "json"
    if not found and progress.stage == "parse":
        found, media = _raw_resources(message)
    for index, resource in found:
        path = bad_character_path(resource, f"Bundle.entry[{index}].resource")
        if path is not None:
            return [index], [path]
    if progress.stage == "parse":
        for index, resource in found:
            if _breaks_validation(resource, media):
                return [index], [f"Bundle.entry[{index}].resource"]
        return [], ["Bundle"]
    indexes = [index for index, _ in found]
    return indexes, [f"Bundle.entry[{i}]" for i in indexes[:10]]


def _raw_resources(message: FeedMessage) -> tuple[list[tuple[int, Any]], Literal["json", "xml"]]:
    """The entries' resources as sent (JSON objects, or XML elements as bytes)."""
    payload = bytes(message.payload)
    if message.kind != MessageKind.HL7V2:
        media = media_of(message.kind)
        return resources_as_sent(payload, media), media
    try:
        return bundle_resources(convert(payload).bundle), "json"
    except (ValueError, RecursionError, AttributeError, Hl7Rejected):
        return [], "json"


def _breaks_validation(resource: Any, media: Literal["json", "xml"]) -> bool:
    try:
        data = resource if isinstance(resource, bytes) else fhirjson.dumps(resource).encode()
        validate_resource(data, media)
    except Exception:  # tracing which entry breaks the validator: any failure counts
        return True
    return False
