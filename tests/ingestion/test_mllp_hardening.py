"""MLLP under input that tries to break it: huge, broken and slow frames, many connections,
a revoked credential and a stop signal.

The frame reader is tested on its own (its cost must grow linearly with the
frame); everything else runs a real `mllp_listen` process on 127.0.0.1
against the test database, with bounded load (a few dozen connections, one
frame a little over a small limit).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.db import connection, transaction

from audit.models import AuditAction, AuditEvent
from ingestion.credentials import feed_credential_revoke
from ingestion.mllp import START, Frame, FrameReader, frame
from ingestion.models import FeedCredential, FeedMessage
from tests.factories import (
    BASE_DIR,
    hl7_message,
    make_credential,
    make_organisation,
    next_nhs_number,
    wait_until_listening,
)
from tests.services import database_url, free_port

E2E = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
MIB = 1024 * 1024


# ------------------------------------------------------------------ the frame reader


def _feed_all(reader: FrameReader, stream: bytes, size: int) -> list[Frame]:
    frames: list[Frame] = []
    for i in range(0, len(stream), size):
        frames += reader.feed(stream[i : i + size])
    return frames


def test_a_20_mib_frame_is_split_in_linear_time() -> None:
    payload = b"MSH|^~\\&|" + b"X" * (20 * MIB - 9)
    stream = frame(payload)
    reader = FrameReader(20 * MIB)
    started = time.process_time()
    frames = _feed_all(reader, stream, 65536)
    spent = time.process_time() - started
    # Rescanning the buffer on every read cost about 6 s of CPU here; one pass about 0.16 s.
    assert spent < 1.0, spent
    assert [f.problem for f in frames] == [""]
    assert frames[0].payload == payload


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_frames_split_anywhere_among_noise_come_out_whole(size: int) -> None:
    messages = [b"MSH|a\rPID|1", b"MSH|b\x1cnot-the-end\r", b"MSH|c"]
    stream = b"\r\nnoise" + b"".join(frame(m) + b"\n" for m in messages) + START + b"MSH|d"
    frames = _feed_all(FrameReader(1000), stream, size)
    assert [(f.payload, f.problem) for f in frames] == [(m, "") for m in messages]


def test_a_start_block_inside_an_unterminated_frame_ends_it_as_broken() -> None:
    reader = FrameReader(1000)
    frames = reader.feed(START + b"MSH|first\rPID|1\r" + frame(b"MSH|second"))
    assert [(f.payload, f.problem) for f in frames] == [
        (b"MSH|first\rPID|1\r", "unterminated"),
        (b"MSH|second", ""),
    ]


def test_bare_start_blocks_are_noise_not_broken_frames() -> None:
    frames = FrameReader(1000).feed(START * 5 + b" \r\n" + START + frame(b"MSH|x"))
    assert [(f.payload, f.problem) for f in frames] == [(b"MSH|x", "")]


def test_a_frame_over_the_limit_is_reported_once_by_its_head_and_skipped() -> None:
    reader = FrameReader(1000)
    big = b"MSH|big\r" + b"X" * 50_000
    frames = _feed_all(reader, frame(big) + frame(b"MSH|next"), 4096)
    assert [f.problem for f in frames] == ["too-large", ""]
    assert frames[0].payload.startswith(b"MSH|big\r")
    assert len(frames[0].payload) <= 8192
    assert frames[1].payload == b"MSH|next"
    # Split exactly between <FS> and <CR> while skipping, and cut short by a new <VT>.
    reader = FrameReader(1000)
    stream = START + big + b"\x1c" + b"\r" + START + big + frame(b"MSH|after")
    frames = _feed_all(reader, stream, len(START + big) + 1)
    assert [f.problem for f in frames] == ["too-large", "too-large", ""]
    assert frames[2].payload == b"MSH|after"


# ------------------------------------------------------------------ a real listener


@dataclass
class Listener:
    proc: subprocess.Popen[bytes]
    port: int

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=20)

    def threads(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("Threads:"))[8:])


@contextmanager
def listening(token: str, *args: str, env: dict[str, str] | None = None) -> Iterator[Listener]:
    port = free_port()
    environ = {**os.environ, "DATABASE_URL": database_url(settings.DATABASES["default"]),
               "MLLP_FEED_TOKEN": token, "CELERY_QUEUE": "test-mllp-hardening", **(env or {})}  # fmt: skip
    log_path = BASE_DIR / ".data" / "test-mllp-hardening.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "mllp_listen", "--port", str(port), *args],
            env=environ, cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until_listening(proc, port, "mllp_listen (see .data/test-mllp-hardening.log)")
        yield Listener(proc, port)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def hospital() -> tuple[FeedCredential, str]:
    organisation = make_organisation(ods_code="ZAC01", name="Borough General", kind="acute")
    return make_credential(organisation)


def _acks(sock: socket.socket, count: int, timeout: float = 20) -> list[str]:
    reader = FrameReader(1_000_000)
    acks: list[str] = []
    sock.settimeout(timeout)
    while len(acks) < count:
        data = sock.recv(65536)
        assert data, f"the listener closed the connection after {len(acks)} ACKs"
        acks += [f.payload.decode() for f in reader.feed(data)]
    return acks


def _acks_until_closed(sock: socket.socket, timeout: float = 30) -> list[str]:
    reader = FrameReader(1_000_000)
    acks: list[str] = []
    sock.settimeout(timeout)
    while data := sock.recv(65536):
        acks += [f.payload.decode() for f in reader.feed(data)]
    return acks


def _segment(ack: str, name: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith(name)).split("|")


def _msa(ack: str) -> list[str]:
    return _segment(ack, "MSA")


def _err_code(ack: str) -> str:
    return _segment(ack, "ERR")[3].split("^")[0]


def _closed_by_listener(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _stored() -> set[str]:
    keys = FeedMessage.objects.values_list("idempotency_key", flat=True)
    return {key.removeprefix("hl7v2:") for key in keys}


@pytest.fixture
def audit_mark() -> int:
    """The newest audit event before the test: the trail is append-only, so earlier
    tests' events stay in it even when their other rows are flushed."""
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _rejections(after: int) -> list[dict[str, str]]:
    events = AuditEvent.objects.filter(action=AuditAction.FEED_REJECTED, id__gt=after)
    return [dict(e.detail) for e in events.order_by("id")]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_frame_without_its_end_block_is_refused_and_the_next_message_is_taken(
    hospital: tuple[FeedCredential, str], audit_mark: int
) -> None:
    cut = hl7_message(next_nhs_number(), control_id="cut-a", visit="V71").encode()
    after = hl7_message(next_nhs_number(), control_id="next-b", visit="V72").encode()
    with listening(hospital[1]) as listener, listener.connect() as sock:
        sock.sendall(START + cut + frame(after))
        refused, taken = _acks(sock, 2, timeout=10)
    assert _msa(refused)[1:3] == ["AR", "cut-a"]
    assert _err_code(refused) == "100"
    assert _msa(taken)[1:3] == ["AA", "next-b"]
    assert _stored() == {"next-b"}
    [rejection] = _rejections(audit_mark)
    assert rejection["code"] == "100"
    assert rejection["kind"] == "hl7v2"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_stream_of_broken_frames_is_cut_off_after_ten(
    hospital: tuple[FeedCredential, str], audit_mark: int
) -> None:
    broken = START + hl7_message(next_nhs_number(), control_id="broken").encode()
    acks: list[str] = []
    with listening(hospital[1]) as listener, listener.connect() as sock:
        sock.sendall(broken)
        for _ in range(10):  # each start block ends the frame before it, unterminated
            sock.sendall(broken)
            acks += _acks(sock, 1)
        sock.sendall(broken)  # the eleventh
        assert _closed_by_listener(sock, within=5)
    assert [_msa(a)[1:3] for a in acks] == [["AR", "broken"]] * 10
    assert len(_rejections(audit_mark)) == 10


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_broken_frame_without_a_readable_msh_is_logged_and_audited(
    hospital: tuple[FeedCredential, str], audit_mark: int
) -> None:
    after = hl7_message(next_nhs_number(), control_id="next-c", visit="V73").encode()
    with listening(hospital[1]) as listener, listener.connect() as sock:
        sock.sendall(START + b"\x00\x01 not HL7 at all" + frame(after))
        [taken] = _acks(sock, 1, timeout=10)
        assert not _closed_by_listener(sock, within=1)  # no answer for the unreadable one
    assert _msa(taken)[1:3] == ["AA", "next-c"]
    assert _stored() == {"next-c"}
    [rejection] = _rejections(audit_mark)
    assert (rejection["code"], rejection["location"]) == ("100", "")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_frame_over_the_size_limit_gets_an_ar_and_the_next_message_is_taken(
    hospital: tuple[FeedCredential, str], audit_mark: int
) -> None:
    big = hl7_message(next_nhs_number(), control_id="too-big", visit="V74") + (
        "NTE|1||" + "X" * 150_000 + "\r"
    )
    after = hl7_message(next_nhs_number(), control_id="next-d", visit="V75").encode()
    with (
        listening(hospital[1], env={"FEED_MAX_BYTES": "100000"}) as listener,
        listener.connect() as sock,
    ):
        sock.sendall(frame(big.encode()) + frame(after))
        refused, taken = _acks(sock, 2, timeout=10)
    assert _msa(refused)[1:3] == ["AR", "too-big"]
    assert _err_code(refused) == "207"
    assert _msa(taken)[1:3] == ["AA", "next-d"]
    assert _stored() == {"next-d"}
    assert [r["code"] for r in _rejections(audit_mark)] == ["207"]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_revoked_credential_gets_an_ar_naming_the_message_and_is_audited(
    hospital: tuple[FeedCredential, str], audit_mark: int
) -> None:
    credential, token = hospital
    message = hl7_message(next_nhs_number(), control_id="after-revoke", visit="V76").encode()
    with listening(token) as listener, listener.connect() as sock:
        feed_credential_revoke(credential=credential)
        sock.sendall(frame(message))
        [refused] = _acks(sock, 1)
    assert _msa(refused)[1:3] == ["AR", "after-revoke"]
    assert _err_code(refused) == "207"
    assert not FeedMessage.objects.exists()
    [rejection] = _rejections(audit_mark)
    assert rejection["code"] == "207"
    event = AuditEvent.objects.get(action=AuditAction.FEED_REJECTED, id__gt=audit_mark)
    assert event.actor_id == credential.public_id


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_connections_over_the_cap_are_closed_and_cost_no_thread(
    hospital: tuple[FeedCredential, str],
) -> None:
    with listening(hospital[1], "--max-connections", "4") as listener:
        admitted = []
        for i in range(4):  # each proven admitted by its answer
            admitted.append(listener.connect())
            message = hl7_message(next_nhs_number(), control_id=f"cap-{i}", visit=f"V6{i}")
            admitted[i].sendall(frame(message.encode()))
            assert _msa(_acks(admitted[i], 1)[0])[1] == "AA"
        threads = listener.threads()
        extra = [listener.connect() for _ in range(40)]
        still_open = [i for i, s in enumerate(extra) if not _closed_by_listener(s, within=5)]
        assert still_open == []
        assert listener.threads() <= threads
        for sock in admitted[1:]:  # the admitted ones still work
            assert not _closed_by_listener(sock, within=0.05)
        for sock in extra + admitted:
            sock.close()
        time.sleep(0.5)
        with listener.connect() as sock:  # closing frees the places
            sock.sendall(frame(hl7_message(next_nhs_number(), control_id="cap-5").encode()))
            assert _msa(_acks(sock, 1)[0])[1] == "AA"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_idle_and_slow_senders_are_cut_off(hospital: tuple[FeedCredential, str]) -> None:
    with listening(hospital[1], "--idle-seconds", "2", "--frame-seconds", "1") as listener:
        with listener.connect() as idle, listener.connect() as stalled:
            started = time.monotonic()
            stalled.sendall(START + b"MSH|^~\\&|PAS")
            assert _closed_by_listener(stalled, within=4)
            assert _closed_by_listener(idle, within=4)
            assert time.monotonic() - started >= 1.5  # idle is longer than a frame's limit
        with listener.connect() as trickle:  # a byte at a time never finishes its frame
            trickle.sendall(START)
            started = time.monotonic()
            closed = False
            while not closed and time.monotonic() - started < 6:
                try:
                    trickle.sendall(b"M")
                except OSError:
                    closed = True
                closed = closed or _closed_by_listener(trickle, within=0.3)
            assert closed
            assert time.monotonic() - started < 3


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_listen_backlog_is_not_five(hospital: tuple[FeedCredential, str]) -> None:
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    with listening(hospital[1]) as listener:
        out = subprocess.run(
            ["ss", "-ltnH", f"sport = :{listener.port}"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
    assert int(out[2]) == min(128, somaxconn)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_stop_signal_finishes_the_message_in_flight_then_exits_cleanly(
    hospital: tuple[FeedCredential, str], sig: signal.Signals
) -> None:
    credential, token = hospital
    first = hl7_message(next_nhs_number(), control_id="before-stop", visit="V77").encode()
    in_flight = hl7_message(next_nhs_number(), control_id="in-flight", visit="V78").encode()
    handed_back = hl7_message(next_nhs_number(), control_id="handed-back", visit="V79").encode()
    with listening(token) as listener, listener.connect() as sock, listener.connect() as idle:
        sock.sendall(frame(first))
        acks = _acks(sock, 1)
        # Hold the credential's row so the next message waits inside the listener.
        with transaction.atomic():
            FeedCredential.objects.select_for_update().get(pk=credential.pk)
            sock.sendall(frame(in_flight) + frame(handed_back))
            _wait_for_a_lock_wait()
            listener.proc.send_signal(sig)
            time.sleep(1)  # the listener must not give up the message it holds meanwhile
        acks += _acks_until_closed(sock)
        assert listener.proc.wait(timeout=30) == 0
        assert _closed_by_listener(idle, within=1)
    assert [_msa(a)[1:3] for a in acks] == [["AA", "before-stop"], ["AA", "in-flight"]]
    # Every message acknowledged is stored, and only those: the rest goes back to the sender.
    assert _stored() == {"before-stop", "in-flight"}


def _wait_for_a_lock_wait() -> None:
    deadline = time.monotonic() + 20
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            row = cursor.fetchone()
        if row and row[0]:
            return
        assert time.monotonic() < deadline, "the listener never waited for the lock"
        time.sleep(0.05)


# ------------------------------------------------------------------ the deployment


def test_the_mllp_port_is_published_on_one_chosen_address_only() -> None:
    compose = yaml.safe_load((BASE_DIR / "deploy" / "compose.yaml").read_text())
    mllp = compose["services"]["mllp"]
    [published] = mllp["ports"]
    host, _, rest = str(published).rpartition(":")
    address = host.rpartition(":")[0]
    assert rest == "2575"
    assert address.startswith("${MLLP_BIND_ADDRESS:?"), published
    # A stop must be allowed to finish the message in flight (the listener's own grace is 30 s).
    assert int(str(mllp["stop_grace_period"]).rstrip("s")) > 30
