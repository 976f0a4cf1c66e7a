"""Shared fixtures. Everything here talks to real PostgreSQL, Redis and Celery."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from sharedrecord.celery import app as celery_app
from tests.services import CeleryWorker, database_url

# Each test session consumes its own queue, so a worker from `make run` on the
# same Redis never takes a test's task (and the reverse).
TEST_QUEUE = f"test-{uuid.uuid4().hex[:12]}"
celery_app.conf.task_default_queue = TEST_QUEUE


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: Any, django_db_blocker: Any) -> Iterator[CeleryWorker]:
    """A real Celery worker process on the test database; tests using it need committed data."""
    worker = CeleryWorker(database=database_url(settings.DATABASES["default"]), queue=TEST_QUEUE)
    worker.start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
