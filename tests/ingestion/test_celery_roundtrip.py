"""A task goes through the real Redis broker to a real worker process and back."""

from __future__ import annotations

import pytest

from ingestion.tasks import ping
from tests.services import CeleryWorker

pytestmark = pytest.mark.e2e


def test_a_task_round_trips_through_redis_and_a_worker_process(
    celery_worker: CeleryWorker,
) -> None:
    assert celery_worker.proc is not None
    assert celery_worker.proc.poll() is None
    result = ping.delay()
    assert result.get(timeout=30) == "pong"
    assert result.successful()
