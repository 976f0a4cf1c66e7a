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


def test_a_maintenance_task_reaches_a_worker_through_its_own_queue(
    celery_worker: CeleryWorker,
) -> None:
    from ingestion.tasks import feed_messages_sweep_task
    from sharedrecord.celery import platform_queues, task_queue_for

    assert task_queue_for(feed_messages_sweep_task.name) == platform_queues()["maintenance"]
    assert platform_queues()["maintenance"] == f"{celery_worker.queue}-maintenance"
    result = feed_messages_sweep_task.apply_async(ignore_result=False)
    assert isinstance(result.get(timeout=60), int)
