"""The Celery workers' metrics: task rates, failures and retries, and each queue's depth and age.

Counters are kept in the pool processes (prefork), so a worker that serves
metrics needs PROMETHEUS_MULTIPROC_DIR (a folder of its own on its host):
each process writes its counters there, and the endpoint sums them. The
endpoint is started by the worker's main process when WORKER_METRICS_PORT is
set. Labels are task names, queues and states: never a task's arguments.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    task_success,
    worker_init,
    worker_process_shutdown,
    worker_ready,
)
from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

TASKS = Counter(
    "sharedrecord_celery_tasks_total",
    "Celery tasks finished, by task name and state (succeeded, failed, retried).",
    ["task", "state"],
)
TASK_SECONDS = Histogram(
    "sharedrecord_celery_task_seconds",
    "Time a Celery task ran, by task name.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
_started: dict[str, float] = {}


def _name(sender: Any) -> str:
    return str(getattr(sender, "name", None) or "unknown")


@task_prerun.connect
def _task_started(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.monotonic()


@task_postrun.connect
def _task_ended(task_id: str | None = None, sender: Any = None, **_: Any) -> None:
    began = _started.pop(task_id or "", None)
    if began is not None:
        TASK_SECONDS.labels(_name(sender)).observe(time.monotonic() - began)


@task_success.connect
def _task_succeeded(sender: Any = None, **_: Any) -> None:
    TASKS.labels(_name(sender), "succeeded").inc()


@task_failure.connect
def _task_failed(sender: Any = None, **_: Any) -> None:
    TASKS.labels(_name(sender), "failed").inc()


@task_retry.connect
def _task_retried(sender: Any = None, **_: Any) -> None:
    TASKS.labels(_name(sender), "retried").inc()


@worker_init.connect
def _fresh_metrics_folder(**_: Any) -> None:
    """Empty the metrics folder before the pool starts: a restarted worker counts from 0."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        multiprocess_dir_reset(folder)


@worker_process_shutdown.connect
def _pool_process_gone(pid: int | None = None, **_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


@worker_ready.connect
def _serve_worker_metrics(**_: Any) -> None:
    """Serve this worker's metrics on WORKER_METRICS_PORT (settings), if it is set."""
    from django.conf import settings

    from sharedrecord.metrics import metrics_registry

    port = settings.WORKER_METRICS_PORT
    if not port:
        return
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        logger.warning(
            "WORKER_METRICS_PORT is set without PROMETHEUS_MULTIPROC_DIR: "
            "only the main process's metrics will be served"
        )
    start_http_server(
        port, addr=settings.WORKER_METRICS_ADDRESS, registry=metrics_registry(database=False)
    )
    logger.info("worker metrics on %s:%s/metrics", settings.WORKER_METRICS_ADDRESS, port)


def multiprocess_dir_reset(path: str) -> None:
    """Empty a metrics folder before the processes that write to it start (deploy scripts)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


# --------------------------------------------------------------- queue depth and age


class QueueCollector(Collector):
    """Each platform queue's depth (tasks waiting) and age (how long its oldest has waited).

    Read from the Redis broker when scraped: kombu pushes on the left and
    workers take from the right, so the oldest waiting task is the last in the
    list; its `published_at` header was stamped when it was queued
    (sharedrecord/celery.py).
    """

    uses_database = False

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from sharedrecord.celery import app, platform_queues

        depth = GaugeMetricFamily(
            "sharedrecord_queue_depth", "Tasks waiting in a queue.", labels=["kind", "queue"]
        )
        age = GaugeMetricFamily(
            "sharedrecord_queue_oldest_age_seconds",
            "How long the oldest task waiting in a queue has waited (0 when it is empty).",
            labels=["kind", "queue"],
        )
        now = time.time()
        try:
            with app.connection_for_read() as conn:
                client = conn.default_channel.client  # type: ignore[attr-defined]
                for kind, queue in platform_queues().items():
                    waiting = int(client.llen(queue))
                    depth.add_metric([kind, queue], waiting)
                    age.add_metric([kind, queue], _oldest_age(client.lindex(queue, -1), now))
        except (redis.RedisError, OSError):
            logger.warning("queue metrics: the broker did not answer")
            return
        yield depth
        yield age


def _oldest_age(raw: bytes | None, now: float) -> float:
    if raw is None:
        return 0.0
    try:
        published = float(json.loads(raw)["headers"]["published_at"])
    except (ValueError, KeyError, TypeError):
        return 0.0  # queued before stamping began, or not a Celery task
    return max(0.0, now - published)
