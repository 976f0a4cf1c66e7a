"""Every process the platform starts stops cleanly on SIGTERM and SIGINT.

The local runner (`make run`) stops its web server, workers and beat whichever
signal it gets; a Celery worker told to stop finishes the message it holds.
(`mllp_listen` is proven in tests/ingestion/test_mllp_hardening.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from django.conf import settings
from django.db import transaction
from psycopg import sql

from ingestion.models import FeedMessage
from ingestion.processing import MESSAGE_LOCK_NAMESPACE
from sharedrecord.celery import app as celery_app
from sharedrecord.localservices import with_database
from tests.factories import feed, make_credential, next_nhs_number, partner, small_bundle
from tests.services import BASE_DIR, CeleryWorker, database_url, free_port

pytestmark = pytest.mark.slow


def _wait_for(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def runner_database(django_db_setup: Any, django_db_blocker: Any) -> Iterator[str]:
    """A database of its own for the runner (it migrates and seeds what it is given)."""
    test_url = database_url(settings.DATABASES["default"])
    name = f"{settings.DATABASES['default']['NAME']}_runner"
    yield with_database(test_url, name)
    with psycopg.connect(with_database(test_url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_local_runner_stops_everything_it_started(
    signum: signal.Signals, runner_database: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": runner_database,
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_QUEUE": f"runner-{uuid.uuid4().hex[:10]}",
        "CELERY_BEAT_SCHEDULE_FILE": str(tmp_path / "beat-schedule"),
        "PORT": str(free_port()),
    }
    out = tmp_path / "runner.log"
    with out.open("wb") as log:
        runner = subprocess.Popen(
            [sys.executable, "-m", "sharedrecord.localservices", "run"],
            env=env, cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for(
            lambda: "Shared care record running" in out.read_text() or runner.poll() is not None,
            "the runner to start",
            timeout=240,
        )
        assert runner.poll() is None, out.read_text()[-3000:]
        children = psutil.Process(runner.pid).children(recursive=True)
        commands = [" ".join(child.cmdline()) for child in children]
        assert any("runserver" in c for c in commands)
        assert sum("worker" in c and "--queues" in c for c in commands) >= 2
        assert any(" beat " in c for c in commands)

        runner.send_signal(signum)
        assert runner.wait(timeout=90) == 0, out.read_text()[-3000:]
        _, alive = psutil.wait_procs(children, timeout=5)
        assert alive == [], [" ".join(p.cmdline()) for p in alive]
        assert f"{signum.name} received" in out.read_text()
    finally:
        if runner.poll() is None:
            for child in psutil.Process(runner.pid).children(recursive=True):
                child.kill()
            runner.kill()
            runner.wait()


@pytest.mark.django_db(transaction=True)
def test_a_worker_told_to_stop_finishes_the_message_it_holds() -> None:
    credential, _ = make_credential(partner("ZAC01"))
    queue = f"stop-{uuid.uuid4().hex[:10]}"
    # The message is queued on this test's own queue only: the session's worker
    # (tests/conftest.py), if an earlier test started it, must never take it.
    previous_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    try:
        message = _stop_while_holding(queue, credential)
    finally:
        celery_app.conf.task_default_queue = previous_queue
    assert FeedMessage.objects.get(pk=message.pk).status == "done"


def _stop_while_holding(queue: str, credential: Any) -> FeedMessage:
    """SIGTERM a worker while its message waits on a lock; returns once the worker exited."""
    worker = CeleryWorker(database=database_url(settings.DATABASES["default"]), queue=queue)
    worker.start()
    assert worker.proc is not None
    # Hold the message's processing lock, so the worker's task stays in flight.
    with psycopg.connect(database_url(settings.DATABASES["default"]), autocommit=True) as hold:
        try:
            worker.wait_ready()
            log_start = worker.log_path.stat().st_size
            # Stored and locked in one transaction; its commit queues it (receiving.py).
            with transaction.atomic():
                message = feed(credential, small_bundle(next_nhs_number(), key="stop1"),
                               process=False)  # fmt: skip
                hold.execute(
                    "SELECT pg_advisory_lock(%s, %s)", [MESSAGE_LOCK_NAMESPACE, message.pk]
                )
            _wait_for(
                lambda: FeedMessage.objects.get(pk=message.pk).status == "processing",
                "the worker to claim the message",
                timeout=60,
            )
            worker.proc.send_signal(signal.SIGTERM)
            _wait_for(
                lambda: "Warm shutdown" in worker.log_path.read_bytes()[log_start:].decode(),
                "the worker to begin its warm shutdown",
                timeout=30,
            )
            assert worker.proc.poll() is None  # still finishing what it holds
        finally:
            hold.execute("SELECT pg_advisory_unlock_all()")
    try:
        assert worker.proc.wait(timeout=60) == 0
    finally:
        worker.stop()
    return message
