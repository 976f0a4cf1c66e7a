"""A worker killed mid-message: after restart the message completes, nothing lost or doubled."""

from __future__ import annotations

import datetime
import json
import os
import signal
import time
import uuid

import psutil
import psycopg
import pytest
from django.conf import settings
from django.db import connection

from ingestion.models import FeedMessage, MessageKind, MessageStatus
from ingestion.processing import MESSAGE_LOCK_NAMESPACE
from ingestion.receiving import feed_message_receive
from ingestion.recovery import feed_messages_sweep
from sharedrecord.celery import app as celery_app
from sharedrecord.models import Entry, Organisation
from tests.factories import EXTERNAL, make_credential, next_nhs_number, with_nhs_number
from tests.services import CeleryWorker, database_url

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _processing_lock_held(message_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s::int::oid AND objid = %s::int::oid AND objsubid = 2",
            [MESSAGE_LOCK_NAMESPACE, message_id],
        )
        return bool(cursor.fetchone()[0])


def _big_message(ods_code: str) -> tuple[int, str]:
    """Store (and so queue) the largest Synthea HIV bundle for a new person; (message pk, NHS number)."""
    organisation = Organisation.objects.create(
        ods_code=ods_code, name="Fault test", kind="acute", dsa_start="2025-01-01"
    )
    credential, _ = make_credential(organisation)
    biggest = max(
        (p for p in (EXTERNAL / "synthea-hiv-r4").glob("*.json") if p.name != "MANIFEST.json"),
        key=lambda p: p.stat().st_size,
    )
    number = next_nhs_number()
    bundle = with_nhs_number(json.loads(biggest.read_text()), number)
    received = feed_message_receive(
        credential=credential,
        kind=MessageKind.FHIR_JSON,
        payload=json.dumps(bundle).encode(),
        idempotency_key=f"fault-{ods_code}",
        entry_count=len(bundle["entry"]),
    )
    return received.message.pk, number


def _kill_hard(worker: CeleryWorker) -> None:
    assert worker.proc is not None
    main = psutil.Process(worker.proc.pid)
    for process in [*main.children(recursive=True), main]:
        os.kill(process.pid, signal.SIGKILL)
    worker.proc.wait(timeout=10)


def test_a_message_survives_its_worker_being_killed_mid_transaction(
    celery_worker: CeleryWorker,
) -> None:
    # This test's messages go to a queue of its own, so only the worker it kills sees them.
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    previous_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    database = database_url(settings.DATABASES["default"])
    victim = CeleryWorker(database=database, queue=queue, concurrency=1)
    replacement = CeleryWorker(database=database, queue=queue, concurrency=1)
    try:
        message_id, number = _big_message("ZAC88")

        victim.start()
        deadline = time.monotonic() + 60
        while not _processing_lock_held(message_id):
            assert time.monotonic() < deadline, "the worker never started the message"
            time.sleep(0.005)
        _kill_hard(victim)
        message = FeedMessage.objects.get(pk=message_id)
        assert message.status == MessageStatus.PROCESSING
        assert not Entry.objects.filter(patient__nhs_number=number).exists()  # rolled back

        replacement.start()
        # The sweep (beat runs it every minute) sees no live lock and re-queues it.
        deadline = time.monotonic() + 30
        while feed_messages_sweep(older_than=datetime.timedelta(0)) == 0:
            assert time.monotonic() < deadline, "the dead worker's lock was never released"
            time.sleep(0.2)
        deadline = time.monotonic() + 90
        while FeedMessage.objects.get(pk=message_id).status != MessageStatus.DONE:
            assert time.monotonic() < deadline, "the message never completed after restart"
            time.sleep(0.2)
        message = FeedMessage.objects.get(pk=message_id)
        stored = Entry.objects.filter(patient__nhs_number=number)
        assert stored.count() == message.counts["created"]
        assert message.counts["created"] > 0
        keys = list(stored.values_list("resource_type", "source_id"))
        assert len(keys) == len(set(keys))
        assert message.attempts == 2
    finally:
        celery_app.conf.task_default_queue = previous_queue
        victim.stop()
        replacement.stop()


def test_the_sweep_leaves_a_message_alone_while_its_worker_holds_it() -> None:
    organisation = Organisation.objects.create(
        ods_code="ZAC89", name="Sweep test", kind="acute", dsa_start="2025-01-01"
    )
    credential, _ = make_credential(organisation)
    message = FeedMessage.objects.create(
        organisation=organisation,
        credential=credential,
        kind=MessageKind.FHIR_JSON,
        idempotency_key="sweep",
        payload=b"{}",
        payload_sha256="0" * 64,
        status=MessageStatus.PROCESSING,
        started_at=datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC),
    )
    # A separate session standing in for the live worker (not from Django's pool,
    # which would keep the session, and its lock, open after close()).
    holder = psycopg.connect(database_url(settings.DATABASES["default"]), autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", [MESSAGE_LOCK_NAMESPACE, message.pk])
        assert feed_messages_sweep(older_than=datetime.timedelta(0)) == 0
        message.refresh_from_db()
        assert message.status == MessageStatus.PROCESSING
    finally:
        holder.close()
    # The server frees a closed session's locks a moment after the close.
    deadline = time.monotonic() + 10
    while feed_messages_sweep(older_than=datetime.timedelta(0)) != 1:
        assert time.monotonic() < deadline, "the sweep never took the released message"
        time.sleep(0.05)
    message.refresh_from_db()
    assert message.status in {MessageStatus.RECEIVED, MessageStatus.DONE, MessageStatus.REJECTED}


def test_a_lost_database_connection_is_retried_and_the_message_completes(
    celery_worker: CeleryWorker,
) -> None:
    message_id, number = _big_message("ZAC90")
    deadline = time.monotonic() + 60
    while not _processing_lock_held(message_id):
        assert time.monotonic() < deadline, "the worker never started the message"
        time.sleep(0.005)
    # A transient fault: the worker's database session dies mid-transaction.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND granted AND classid = %s::int::oid AND objid = %s::int::oid",
            [MESSAGE_LOCK_NAMESPACE, message_id],
        )
        assert cursor.fetchone() == (True,)
    deadline = time.monotonic() + 90
    while FeedMessage.objects.get(pk=message_id).status != MessageStatus.DONE:
        assert time.monotonic() < deadline, "the message was not retried to completion"
        time.sleep(0.2)
    message = FeedMessage.objects.get(pk=message_id)
    assert message.attempts == 2
    stored = Entry.objects.filter(patient__nhs_number=number)
    assert stored.count() == message.counts["created"] > 0
    assert celery_worker.proc is not None
    assert celery_worker.proc.poll() is None  # the worker itself carried on
