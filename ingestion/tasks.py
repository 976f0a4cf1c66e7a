"""Celery entry points. Tasks are thin: they take ids and call the service of the same name."""

from __future__ import annotations

import datetime

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

# Only errors that another try can fix are retried; a malformed message is
# REJECTED by the service with its reason, never retried.
TRANSIENT = (OperationalError, InterfaceError)


@shared_task(name="ingestion.ping")
def ping() -> str:
    """Answer through the broker and result backend; used to prove a worker is live."""
    return "pong"


@shared_task(
    name="ingestion.feed_message_process",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=5,
)
def feed_message_process_task(self: Task, message_id: int) -> str:  # type: ignore[type-arg]
    from ingestion.services import feed_message_process, feed_message_release

    try:
        return feed_message_process(message_id=message_id)
    except TRANSIENT as exc:
        feed_message_release(message_id=message_id)
        raise self.retry(exc=exc, countdown=min(300, 5 * 2**self.request.retries)) from exc
    except Exception:
        feed_message_release(message_id=message_id)
        raise


@shared_task(name="ingestion.feed_messages_sweep")
def feed_messages_sweep_task() -> int:
    from django.conf import settings

    from ingestion.services import feed_messages_sweep

    return feed_messages_sweep(
        older_than=datetime.timedelta(seconds=settings.FEED_STUCK_AFTER_SECONDS)
    )


@shared_task(name="maintenance.audit_partitions_ensure")
def audit_partitions_ensure_task() -> int:
    """Keep three months of audit partitions ready ahead of time (run by beat)."""
    from audit.services import audit_partitions_ensure

    return audit_partitions_ensure(months_ahead=3)
