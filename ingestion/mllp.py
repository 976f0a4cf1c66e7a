"""MLLP (the Minimal Lower Layer Protocol) for integration engines that only speak HL7 v2 over TCP.

Framing: <VT> message <FS><CR>. One connection carries many messages, one
after another; each gets its ACK, in the same framing, only after
`hl7_message_receive` has committed it. Bytes between frames are skipped.
A frame that cannot be taken is answered, never silently dropped:
- cut short by a new <VT> (its end block is missing): AR naming its MSH-10
  when its MSH can be read, else a logged and audited rejection; the next
  frame is read normally;
- larger than FEED_MAX_BYTES: the same, as soon as the limit is passed; the
  rest of it is skipped without being kept;
- cut off by a dropped connection or a stop: not answered at all, so the
  sender still holds it and sends it again (MSH-10 makes that harmless).

One asyncio event loop serves every connection, so an idle or slow sender
costs a socket, not a thread; messages are processed (synchronous Django)
on a small thread pool, each with fresh database connections. python-hl7's
own asyncio MLLP reader (`hl7.mllp`) is not used: it treats bytes before a
<VT> as an invalid block, returns a frame that swallowed the next one as one
message (it does not look for <VT> inside a frame) and decodes as ASCII
before we can honour MSH-18; the small reader here does what we need in
one pass over the bytes.

Limits: at most `max_connections` at once (more are closed on accept), an
idle connection closes after `idle_seconds`, a started frame must arrive
whole within `frame_seconds`, an ACK must be taken within `write_seconds`,
and a connection is closed after MAX_BROKEN_FRAMES broken frames.
On SIGTERM or SIGINT the listener stops accepting, closes idle connections,
finishes the messages being processed (their ACKs are sent), hands back the
rest unanswered, and returns.

The listener is bound to one feed credential (one sending system): MLLP has
no authentication of its own, so deploy it behind the network controls (HSCN,
a VPN or a TLS tunnel) that say who can connect.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from math import inf

from django.db import close_old_connections

from ingestion.credentials import feed_credential_authenticate
from ingestion.hl7_receiving import hl7_message_receive
from ingestion.hl7v2.ack import ack as hl7_ack
from ingestion.hl7v2.er7 import decode, read_header
from ingestion.hl7v2.results import Hl7Header, Hl7Problem, Hl7Rejected
from ingestion.models import FeedCredential, MessageKind
from ingestion.receiving import feed_message_refuse
from sharedrecord.exceptions import NOT_KEPT, store_unavailable

START, END = b"\x0b", b"\x1c\x0d"
_VT, _FS, _CR = 0x0B, 0x1C, 0x0D
_MARKS = re.compile(b"[\x0b\x1c]")
_CONTROL = re.compile(b"[\x00-\x08\x0b-\x1f]")
HEAD_BYTES = 8192  # what is kept of a broken frame: enough to read its MSH
UNTERMINATED, TOO_LARGE = "unterminated", "too-large"
READ_BYTES = 65536
# Broken frames one connection may send before it is closed: each is audited, so a
# sender (or anything on its network) streaming garbage cannot flood the trail.
MAX_BROKEN_FRAMES = 10
logger = logging.getLogger(__name__)


def frame(message: bytes) -> bytes:
    return START + message + END


@dataclass(frozen=True)
class Frame:
    """One frame read: a whole message, or (with a `problem`) the head of a broken one."""

    payload: bytes
    problem: str = ""  # "", UNTERMINATED or TOO_LARGE


class FrameReader:
    """Split a byte stream into MLLP frames in one pass, whatever size the reads arrive in.

    Each byte is looked at once: the search for the next <VT> or <FS> resumes
    where the last read stopped, and nothing of an oversized frame is kept
    beyond its head.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()  # from the current frame's <VT>; empty between frames
        self._framing = False
        self._scan = 0  # where the search for the next marker resumes, in the buffer
        self._skipping = False  # inside an oversized frame already reported
        self._skipped_fs = False  # ... whose last byte read was <FS>

    @property
    def in_frame(self) -> bool:
        """A frame has started and not yet ended (the sender owes us the rest of it)."""
        return self._framing or self._skipping

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        if self._skipping:
            data = self._skip(data)
            if self._skipping:
                return frames
        buffer = self._buffer
        buffer += data
        pos = 0  # the current frame's <VT>, or the first unread byte between frames
        while True:
            if not self._framing:
                start = buffer.find(START, pos)
                if start < 0:
                    pos = len(buffer)  # noise between frames
                    break
                self._framing, pos, self._scan = True, start, start + 1
            mark = _MARKS.search(buffer, self._scan)
            if mark is None:
                self._scan = len(buffer)
                break
            at = mark.start()
            if buffer[at] == _VT:  # a new frame starts inside this one: its end never came
                head = buffer[pos + 1 : min(at, pos + 1 + HEAD_BYTES)]
                if head.strip():  # a bare <VT> is noise, not a message
                    frames.append(Frame(bytes(head), UNTERMINATED))
                pos, self._scan = at, at + 1
                continue
            if at + 1 == len(buffer):  # <FS> last: its <CR> may come with the next read
                self._scan = at
                break
            if buffer[at + 1] != _CR:
                self._scan = at + 1  # a lone <FS> is content
                continue
            if at - pos - 1 > self.max_bytes:
                frames.append(Frame(bytes(buffer[pos + 1 : pos + 1 + HEAD_BYTES]), TOO_LARGE))
            else:
                frames.append(Frame(bytes(buffer[pos + 1 : at])))
            pos, self._framing = at + 2, False
        if self._framing and len(buffer) - pos - 1 > self.max_bytes + 1:  # + a last <FS>
            frames.append(Frame(bytes(buffer[pos + 1 : pos + 1 + HEAD_BYTES]), TOO_LARGE))
            self._skipped_fs = buffer[-1] == _FS
            self._framing, self._skipping, pos = False, True, len(buffer)
        del buffer[:pos]
        self._scan = self._scan - pos if self._framing else 0
        return frames

    def _skip(self, data: bytes) -> bytes:
        """Drop the rest of an oversized frame; return what follows its end."""
        if self._skipped_fs and data[:1] == END[1:]:
            self._skipping = self._skipped_fs = False
            return data[1:]
        self._skipped_fs = False
        mark = _MARKS.search(data)
        while mark is not None:
            at = mark.start()
            if data[at] == _VT:  # the next frame began: the oversized one had no end block
                self._skipping = False
                return data[at:]
            if at + 1 == len(data):
                self._skipped_fs = True
                return b""
            if data[at + 1] == _CR:
                self._skipping = False
                return data[at + 2 :]
            mark = _MARKS.search(data, at + 1)
        return b""


# ------------------------------------------------------------------ what a frame gets


class FeedHandler:
    """Answer each frame for the one sending system the listener serves (runs on a worker thread).

    A whole message goes to `hl7_message_receive` while the credential is live.
    A refusal (revoked credential, broken or oversized frame) is an AR naming
    the message's MSH-10 when its MSH can be read, and is audited like every
    other refused feed message. Returns None when there is nobody to answer:
    the refusal is then only logged and audited.
    """

    def __init__(self, *, token: str, credential: FeedCredential, max_bytes: int) -> None:
        self.token = token
        self.credential = credential  # as it was when the listener started, for the audit trail
        self.max_bytes = max_bytes

    def __call__(self, item: Frame) -> bytes | None:
        if item.problem == UNTERMINATED:
            problem = Hl7Problem(
                "", 0, 0, "100", "The frame has no end block (<FS><CR>) before the next start "
                "block (<VT>); the message was not taken. Send it again, framed."
            )  # fmt: skip
            return self._refuse(item.payload, problem)
        if item.problem == TOO_LARGE:
            problem = Hl7Problem(
                "", 0, 0, "207", f"The message is larger than {self.max_bytes} bytes; "
                "it was not taken."
            )  # fmt: skip
            return self._refuse(item.payload, problem)
        try:
            current = feed_credential_authenticate(token=self.token)  # revocation applies at once
            if current is None:
                problem = Hl7Problem("", 0, 0, "207", "The feed credential was revoked.")
                return self._refuse(item.payload, problem)
            return hl7_message_receive(credential=current, payload=item.payload).ack
        except Exception as exc:
            if not store_unavailable(exc):
                raise
            # Nothing was kept and nothing can be written to say so: an AR the sender
            # retries, on a connection that stays open.
            logger.warning("mllp: the record store is not answering; the message was not taken")
            header = _header(item.payload)
            unavailable = Hl7Problem("", 0, 0, "207", NOT_KEPT)
            if header is None:
                return None
            return hl7_ack(header=header, code="AR", problems=[unavailable], text=NOT_KEPT)

    def _refuse(self, payload: bytes, problem: Hl7Problem) -> bytes | None:
        header = _header(payload)
        feed_message_refuse(
            credential=self.credential,
            kind=MessageKind.HL7V2,
            code=problem.code,
            location=problem.location,
            reason=problem.message,
        )
        if header is None:
            logger.warning("mllp: refused a frame without a readable MSH: %s", problem.message)
            return None
        logger.info("mllp: refused a message: %s", problem.message)
        return hl7_ack(header=header, code="AR", problems=[problem], text=problem.message)


def _header(payload: bytes) -> Hl7Header | None:
    """The MSH of a message (or of the head of a broken one), if it can be read at all.

    Control characters are left out: echoed into the AR, a <VT> or <FS> would
    break the sender's framing.
    """
    first = payload.removeprefix(b"\xef\xbb\xbf").split(b"\r", 1)[0].split(b"\n", 1)[0]
    first = _CONTROL.sub(b"", first)
    try:
        return read_header(decode(first))
    except Hl7Rejected as rejected:  # an unsupported type still has a readable MSH
        return rejected.header


# ------------------------------------------------------------------ the server


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_connections: int = 32
    workers: int = 4  # at most the process's database pool (DB_POOL_MAX_SIZE)
    idle_seconds: float = 300
    frame_seconds: float = 60
    write_seconds: float = 60
    backlog: int = 128
    shutdown_seconds: float = 30


@dataclass
class _Connection:
    writer: asyncio.StreamWriter
    busy: bool = False  # a message from it is being processed or its ACK written


@dataclass
class MllpServer:
    """Serve MLLP on one event loop; `handler` answers each frame on a bounded thread pool."""

    handler: Callable[[Frame], bytes | None]
    limits: Limits
    _connections: dict[asyncio.Task[None], _Connection] = field(default_factory=dict)
    _stopping: bool = False
    _pool: ThreadPoolExecutor | None = None
    _refused: int = 0
    _refused_logged_at: float = -inf

    async def serve(
        self, host: str, port: int, *, on_ready: Callable[[str, int], None] | None = None
    ) -> bool:
        """Serve until SIGTERM or SIGINT; return whether every message in flight was finished."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self._pool = ThreadPoolExecutor(self.limits.workers, thread_name_prefix="mllp")
        server = await asyncio.start_server(
            self._connection, host, port, backlog=self.limits.backlog, reuse_address=True
        )
        if on_ready is not None:
            bound_host, bound_port = server.sockets[0].getsockname()[:2]
            on_ready(str(bound_host), int(bound_port))
        try:
            await stop.wait()
        finally:
            finished = await self._stop(server)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return finished

    async def _stop(self, server: asyncio.Server) -> bool:
        """Stop accepting, close idle connections, let busy ones finish their message."""
        self._stopping = True
        server.close()
        for state in list(self._connections.values()):
            if not state.busy:
                state.writer.close()  # its read ends; the sender still holds any partial frame
        pending = set(self._connections)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=self.limits.shutdown_seconds)
        finished = not pending
        if pending:
            logger.error("mllp: %s messages still in flight after %ss", len(pending),
                         self.limits.shutdown_seconds)  # fmt: skip
            for state in list(self._connections.values()):
                state.writer.transport.abort()
        assert self._pool is not None
        self._pool.shutdown(wait=finished, cancel_futures=True)
        logger.info("mllp: stopped")
        return finished

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._stopping or len(self._connections) >= self.limits.max_connections:
            writer.transport.abort()
            self._refused += 1
            now = time.monotonic()
            if now - self._refused_logged_at >= 10:  # a flood of connections is one line
                logger.warning("mllp: %s connections refused: %s open, the most allowed",
                               self._refused, len(self._connections))  # fmt: skip
                self._refused, self._refused_logged_at = 0, now
            return
        state = self._connections[task] = _Connection(writer)
        loop = asyncio.get_running_loop()
        frames = FrameReader(self.limits.max_bytes)
        frame_started = 0.0
        broken = 0
        try:
            while not self._stopping:
                if frames.in_frame:
                    timeout = frame_started + self.limits.frame_seconds - loop.time()
                else:
                    timeout = self.limits.idle_seconds
                try:
                    data = await asyncio.wait_for(reader.read(READ_BYTES), max(timeout, 0))
                except TimeoutError:
                    why = "a frame was not finished in time" if frames.in_frame else "idle"
                    logger.info("mllp: connection closed: %s", why)
                    return
                if not data:
                    return  # the sender closed; a partial frame is dropped unacknowledged
                was_in_frame = frames.in_frame
                items = frames.feed(data)
                for item in items:
                    if self._stopping:
                        return  # handed back: unanswered, so the sender sends it again
                    broken += 1 if item.problem else 0
                    if broken > MAX_BROKEN_FRAMES:
                        logger.warning("mllp: connection closed: more than %s broken frames",
                                       MAX_BROKEN_FRAMES)  # fmt: skip
                        return
                    state.busy = True
                    answer = await loop.run_in_executor(self._pool, self._answer, item)
                    if answer is not None:
                        writer.write(frame(answer))
                        await asyncio.wait_for(writer.drain(), self.limits.write_seconds)
                    state.busy = False
                if frames.in_frame and (items or not was_in_frame):
                    # A new frame began in this read; the time spent answering the
                    # frames before it is ours, not the sender's.
                    frame_started = loop.time()
        except (ConnectionError, TimeoutError) as exc:
            logger.info("mllp: connection ended: %s", type(exc).__name__)
        except Exception:
            logger.exception("mllp: a message could not be handled; connection closed")
        finally:
            del self._connections[task]
            writer.close()

    def _answer(self, item: Frame) -> bytes | None:
        """On a worker thread: one frame's answer, with the database connection fresh each time."""
        close_old_connections()
        try:
            return self.handler(item)
        finally:
            close_old_connections()
