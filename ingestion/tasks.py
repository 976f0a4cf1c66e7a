"""Celery entry points. Tasks are thin: they take ids and call a service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="ingestion.ping")
def ping() -> str:
    """Answer through the broker and result backend; used to prove a worker is live."""
    return "pong"
