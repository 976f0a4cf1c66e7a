"""Celery entry points. Tasks are thin: they take ids and call a service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="ingestion.ping")
def ping() -> str:
    """Answer through the broker and result backend; used to prove a worker is live."""
    return "pong"


@shared_task(name="maintenance.audit_partitions_ensure")
def audit_partitions_ensure_task() -> int:
    """Keep three months of audit partitions ready ahead of time (run daily by beat)."""
    from audit.services import audit_partitions_ensure

    return audit_partitions_ensure(months_ahead=3)
