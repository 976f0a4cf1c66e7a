"""The opt-out purge's ingestion part: parked items and waiting messages that name the person."""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone

from ingestion.fhir.profile import NHS_NUMBER_SYSTEM
from ingestion.fhir.redaction import redact_person, redact_person_ndjson
from ingestion.models import FeedMessage, MatchQueueItem, MessageKind, MessageStatus
from ingestion.progress import RECEIPT_COUNTS
from ingestion.receiving import media_of


def personal_data_purge(nhs_number: str) -> dict[str, int]:
    """Remove what ingestion holds for an opted-out person (called by the opt-out, locked).

    Parked matching-queue items that name the number, and the person's entries
    in raw messages still waiting to be processed or kept after failing (other
    people's entries in the same message are kept, so nothing else is lost).
    """
    parked = MatchQueueItem.objects.filter(
        Q(nhs_number_sent=nhs_number)
        | Q(resource__identifier__contains=[{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}])
    ).delete()[0]
    redacted = 0
    # Failed messages keep their payload for a replay, so they are purged like waiting ones.
    pending = FeedMessage.objects.select_for_update(skip_locked=True).filter(
        status__in=[MessageStatus.RECEIVED, MessageStatus.FAILED]
    )
    for message in pending:
        payload = bytes(message.payload)
        if nhs_number.encode() not in payload:
            continue
        if message.kind == MessageKind.HL7V2:
            # One person per HL7 v2 message: nothing in it may be kept.
            message.payload = b""
            message.status = MessageStatus.DONE
            message.finished_at = timezone.now()
            message.counts = {**dict.fromkeys(RECEIPT_COUNTS, 0), "blocked": message.entry_count}
            message.issues, message.failure, message.retry_at = [], {}, None
            message.save(
                update_fields=[
                    "payload", "status", "finished_at", "counts", "issues", "failure", "retry_at"
                ]
            )  # fmt: skip
        elif message.kind == MessageKind.FHIR_NDJSON:
            message.payload = redact_person_ndjson(payload, nhs_number)
            message.save(update_fields=["payload"])
        else:
            message.payload = redact_person(payload, media_of(message.kind), nhs_number)
            message.save(update_fields=["payload"])
        redacted += 1
    return {"parked_items": parked, "pending_messages_redacted": redacted}
