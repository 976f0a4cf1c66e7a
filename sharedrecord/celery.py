"""The Celery application; configuration comes from Django settings (CELERY_*).

Work is split into queues by kind, so workers on separate hosts take separate
work (deploy/README.md, "Many hosts"): feeds (the default queue, CELERY_QUEUE),
large messages and imports (FEED_LARGE_QUEUE), notifications and maintenance.
`task_queue_for` routes a task by its name; the feed task picks its own queue
by the message's size (ingestion/receiving.py).
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun

from sharedrecord.logs import log_context_bind, log_context_clear

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sharedrecord.settings")

app = Celery("sharedrecord")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The periodic sweep is maintenance: a busy feeds queue must not hold it up.
MAINTENANCE_TASKS = frozenset({"ingestion.feed_messages_sweep", "ingestion.parked_digests_compose"})


def platform_queues() -> dict[str, str]:
    """Each kind of work and the name of its queue (settings, after CELERY_QUEUE)."""
    from django.conf import settings

    default = str(app.conf.task_default_queue)
    return {
        "feeds": default,
        "large": str(settings.FEED_LARGE_QUEUE or f"{default}-large"),
        "notifications": str(settings.NOTIFICATIONS_QUEUE or f"{default}-notifications"),
        "maintenance": str(settings.MAINTENANCE_QUEUE or f"{default}-maintenance"),
    }


def task_queue_for(name: str) -> str:
    """The queue a task goes to by its name: `notifications.*`, `maintenance.*`, or feeds."""
    queues = platform_queues()
    if name.startswith("maintenance.") or name in MAINTENANCE_TASKS:
        return queues["maintenance"]
    if name.startswith("notifications."):
        return queues["notifications"]
    return queues["feeds"]


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
    """Celery's router (settings CELERY_TASK_ROUTES): an explicit queue= still wins."""
    return {"queue": task_queue_for(name)}


@before_task_publish.connect
def _stamp_published_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Stamp each task with when it was queued, so a queue's age can be measured."""
    if headers is not None:
        headers.setdefault("published_at", time.time())


@task_prerun.connect
def _bind_task_to_logs(task_id: str | None = None, sender: Any = None, **_: Any) -> None:
    """Every log line of a task carries its id and name (never its arguments)."""
    log_context_clear()
    log_context_bind(task_id=task_id or "", task=str(getattr(sender, "name", "")))


@task_postrun.connect
def _unbind_task_from_logs(**_: Any) -> None:
    log_context_clear()


# Task rates, failures and retries, and the worker's metrics endpoint (its signals).
import sharedrecord.taskmetrics  # noqa: E402, F401
