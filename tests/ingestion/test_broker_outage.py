"""With the Redis broker down, a feed POST still answers 202 at once (the message is committed),
/readyz says 503, and the sweep queues the message once Redis is back.

The broker is a private redis-server on a spare port that this test starts and stops; the
machine's shared Redis is never touched.
"""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from ingestion.models import FeedMessage, MessageStatus
from ingestion.recovery import feed_messages_sweep
from sharedrecord.celery import app as celery_app
from tests.factories import (
    hl7_message,
    make_credential,
    make_organisation,
    next_nhs_number,
    small_bundle,
)
from tests.ingestion.conftest import FeedClient
from tests.services import free_port, redis_server_binary

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class PrivateRedis:
    """A redis-server on a fixed spare port, so it can be stopped and started again there."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping():
                    return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def _reset_celery_connections() -> None:
    """Forget the pooled broker connections and the cached result backend (thread-local)."""
    celery_app._pool = None  # type: ignore[attr-defined]
    celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]
    celery_app._backend_cache = None  # type: ignore[attr-defined]
    celery_app._local.__dict__.pop("backend", None)  # type: ignore[attr-defined]


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    conf = celery_app.conf
    saved = (conf.broker_url, conf.result_backend)
    conf.update(broker_url=url, result_backend=url)
    _reset_celery_connections()
    try:
        yield
    finally:
        conf.update(broker_url=saved[0], result_backend=saved[1])
        _reset_celery_connections()


@pytest.fixture
def broker(settings: SettingsWrapper) -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    settings.REDIS_URL = server.url
    try:
        with celery_broker(server.url):
            yield server
    finally:
        server.stop()


def _queued_message_ids(url: str) -> list[int]:
    client = redis.Redis.from_url(url)
    ids = []
    for raw in client.lrange(str(celery_app.conf.task_default_queue), 0, -1):
        envelope = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(envelope["body"]))
        ids.append(int(args[0]))
    return ids


def test_a_post_answers_202_at_once_while_the_broker_is_down_and_the_sweep_queues_it_later(
    client: Client, broker: PrivateRedis
) -> None:
    _, token = make_credential(make_organisation(ods_code="ZBO01", kind="acute"))
    partner = FeedClient(client, token)
    first = partner.post(small_bundle(next_nhs_number(), key="b1"))
    assert first.status_code == 202
    first_id = FeedMessage.objects.get(public_id=first.json()["id"]).pk
    assert _queued_message_ids(broker.url) == [first_id]
    assert client.get("/readyz").status_code == 200

    broker.stop()
    started = time.monotonic()
    response = partner.post(small_bundle(next_nhs_number(), key="b2"))
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.content
    assert elapsed < 1.0, f"the POST took {elapsed:.1f}s with the broker down"
    stored = FeedMessage.objects.get(public_id=response.json()["id"])
    assert stored.status == MessageStatus.RECEIVED
    assert response.json()["status"] == "queued"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] is False

    broker.start()
    assert client.get("/readyz").status_code == 200
    assert feed_messages_sweep(older_than=datetime.timedelta(0)) >= 1
    assert stored.pk in _queued_message_ids(broker.url)
    # And the next message is queued at once again.
    after = partner.post(small_bundle(next_nhs_number(), key="b3"))
    assert after.status_code == 202
    assert FeedMessage.objects.get(public_id=after.json()["id"]).pk in _queued_message_ids(
        broker.url
    )


def test_an_hl7_message_is_acked_at_once_while_the_broker_is_down(
    client: Client, broker: PrivateRedis
) -> None:
    _, token = make_credential(make_organisation(ods_code="ZBO02", kind="acute"))

    def send(control_id: str):
        return client.post(
            "/api/v1/feeds/hl7v2", data=hl7_message(next_nhs_number(), control_id=control_id).encode(),
            content_type="x-application/hl7-v2+er7", HTTP_AUTHORIZATION=f"Bearer {token}",
        )  # fmt: skip

    assert "|AA|" in send("IN1").content.decode()  # in service before the outage
    broker.stop()
    started = time.monotonic()
    response = send("OUT1")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert "|AA|" in response.content.decode()
    assert elapsed < 1.0, f"the ACK took {elapsed:.1f}s with the broker down"
    assert FeedMessage.objects.filter(status=MessageStatus.RECEIVED).count() == 2
