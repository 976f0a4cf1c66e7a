"""Celery entry points. Tasks are thin: they take ids and call the service of the same name."""

from __future__ import annotations

import datetime

from celery import Task, shared_task


@shared_task(name="ingestion.ping")
def ping() -> str:
    """Answer through the broker and result backend; used to prove a worker is live."""
    return "pong"


# Feed tasks keep no result: a result (or a failure) in the backend could carry an
# exception's text, and PostgreSQL's error texts quote the values they refused. What
# happened to a message is on its receipt; these tasks return or raise only ids,
# stages and exception classes.


@shared_task(
    name="ingestion.feed_message_process",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,  # the service counts attempts (FEED_MAX_ATTEMPTS) and ends them
)
def feed_message_process_task(self: Task, message_id: int) -> str:  # type: ignore[type-arg]
    """Process one message; a failed attempt is recorded by the service and retried here."""
    from ingestion.failures import RETRYING, feed_message_retry_delay
    from ingestion.processing import feed_message_process

    status = feed_message_process(message_id=message_id)
    if status == RETRYING:
        raise self.retry(countdown=feed_message_retry_delay(message_id=message_id))
    return status


@shared_task(name="ingestion.feed_messages_sweep", ignore_result=True)
def feed_messages_sweep_task() -> int:
    from django.conf import settings

    from ingestion.recovery import feed_messages_sweep

    return feed_messages_sweep(
        older_than=datetime.timedelta(seconds=settings.FEED_STUCK_AFTER_SECONDS)
    )


@shared_task(name="ingestion.parked_digests_compose", ignore_result=True)
def parked_digests_compose_task() -> int:
    """Yesterday's digest of parked entries, per organisation (run by beat each morning)."""
    from django.utils import timezone

    from ingestion.workbench import parked_digests_compose

    yesterday = timezone.localdate() - datetime.timedelta(days=1)
    return len(parked_digests_compose(day=yesterday))


@shared_task(name="maintenance.audit_partitions_ensure")
def audit_partitions_ensure_task() -> int:
    """Keep three months of audit partitions ready ahead of time (run by beat)."""
    from audit.trail import audit_partitions_ensure

    return audit_partitions_ensure(months_ahead=3)


@shared_task(name="maintenance.audit_verify", ignore_result=True)
def audit_verify_task() -> bool:
    """Walk the audit trail's chains and leave the outcome for the metrics (run by beat)."""
    from audit.integrity import audit_chain_verify
    from audit.metrics import audit_verify_outcome_note

    report = audit_chain_verify()
    audit_verify_outcome_note(intact=report.intact, events_checked=report.events_checked)
    return report.intact
