"""A real `mllp_listen` process: framing, many messages a connection, partial and dropped frames.

Every sample message goes through a real MLLP socket too; a real Celery worker
files what the listener stored.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from ingestion.mllp import START, FrameReader, frame
from ingestion.models import FeedMessage
from sharedrecord.models import Entry
from tests.conftest import TEST_QUEUE
from tests.factories import (
    BASE_DIR,
    hl7_fixture,
    hl7_message,
    hl7_with_control_id,
    hl7_with_nhs_number,
    make_credential,
    make_organisation,
    next_nhs_number,
    wait_until_listening,
)
from tests.ingestion.test_hl7v2 import SUPPORTED, UNSUPPORTED
from tests.services import CeleryWorker, database_url, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def listener(celery_worker: CeleryWorker) -> Iterator[int]:
    organisation = make_organisation(ods_code="ZAC01", name="Borough General", kind="acute")
    _, token = make_credential(organisation)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(settings.DATABASES["default"]),
           "MLLP_FEED_TOKEN": token, "CELERY_QUEUE": TEST_QUEUE}  # fmt: skip
    log = (BASE_DIR / ".data" / "test-mllp.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "mllp_listen", "--port", str(port)],
        env=env, cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_until_listening(proc, port, "mllp_listen")
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def _acks(sock: socket.socket, count: int) -> list[str]:
    reader = FrameReader(1_000_000)
    acks: list[str] = []
    sock.settimeout(20)
    while len(acks) < count:
        data = sock.recv(65536)
        assert data, "the listener closed the connection"
        acks += [f.payload.decode() for f in reader.feed(data)]
    return acks


def _msa(ack: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith("MSA")).split("|")


def _wait_done(count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while FeedMessage.objects.exclude(status__in=["done", "rejected"]).exists() or (
        FeedMessage.objects.count() < count
    ):
        assert time.monotonic() < deadline, (
            "messages not processed in time",
            list(FeedMessage.objects.values_list("status", "attempts", "issues")),
        )
        time.sleep(0.2)


def test_many_messages_on_one_connection_with_split_frames_and_noise(listener: int) -> None:
    numbers = [next_nhs_number() for _ in range(3)]
    messages = [
        hl7_message(n, control_id=f"mllp-{i}", visit=f"V5{i}").encode()
        for i, n in enumerate(numbers)
    ]
    with socket.create_connection(("127.0.0.1", listener)) as sock:
        sock.sendall(b"\r\n" + frame(messages[0]))  # noise before a frame is skipped
        whole = frame(messages[1]) + frame(messages[2])
        sock.sendall(whole[:25])  # a frame split across writes
        time.sleep(0.3)
        sock.sendall(whole[25:])
        acks = _acks(sock, 3)
    assert [_msa(a)[1:3] for a in acks] == [["AA", f"mllp-{i}"] for i in range(3)]
    _wait_done(3)
    for number in numbers:
        assert Entry.objects.filter(patient__nhs_number=number, resource_type="Encounter").exists()


def test_a_dropped_connection_loses_the_partial_frame_only(listener: int) -> None:
    kept, cut = next_nhs_number(), next_nhs_number()
    with socket.create_connection(("127.0.0.1", listener)) as sock:
        sock.sendall(frame(hl7_message(kept, control_id="kept").encode()))
        assert _msa(_acks(sock, 1)[0])[1] == "AA"
        sock.sendall(START + hl7_message(cut, control_id="cut", visit="V61").encode()[:80])
    time.sleep(0.5)
    # The sender re-sends the unacknowledged message on a new connection.
    with socket.create_connection(("127.0.0.1", listener)) as sock:
        sock.sendall(frame(hl7_message(cut, control_id="cut", visit="V61").encode()))
        assert _msa(_acks(sock, 1)[0])[1:3] == ["AA", "cut"]
    _wait_done(2)
    assert FeedMessage.objects.count() == 2


def test_every_sample_file_over_a_real_socket(listener: int) -> None:
    names = sorted(SUPPORTED) + sorted(UNSUPPORTED)
    payloads: list[tuple[str, bytes]] = []
    for i, name in enumerate(names):
        raw = hl7_fixture(name)
        if name in SUPPORTED:
            raw = hl7_with_control_id(hl7_with_nhs_number(raw, next_nhs_number()), f"sock-{i}")
        payloads.append((name, raw))
    with socket.create_connection(("127.0.0.1", listener)) as sock:
        sock.sendall(b"".join(frame(p) for _, p in payloads))
        acks = _acks(sock, len(payloads))
    codes: dict[str, Any] = {
        name: _msa(ack)[1] for (name, _), ack in zip(payloads, acks, strict=True)
    }
    assert {n for n, c in codes.items() if c == "AR"} == set(UNSUPPORTED)
    assert {n for n, c in codes.items() if c in ("AA", "AE")} == set(SUPPORTED)
    _wait_done(len(SUPPORTED))
    assert FeedMessage.objects.filter(status="done").count() == len(SUPPORTED)
