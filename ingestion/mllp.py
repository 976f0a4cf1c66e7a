"""MLLP (the Minimal Lower Layer Protocol) for integration engines that only speak HL7 v2 over TCP.

Framing: <VT> message <FS><CR>. One connection carries many messages, one
after another; each gets its ACK, in the same framing, only after
`hl7_message_receive` has committed it. Bytes before a <VT> are skipped; a
frame cut off by a dropped connection is discarded unacknowledged (the
sender re-sends it, and MSH-10 makes that harmless); a frame larger than the
feed limit closes the connection.

The listener is bound to one feed credential (one sending system): MLLP has
no authentication of its own, so deploy it behind the network controls (HSCN,
a VPN or a TLS tunnel) that say who can connect.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator

from django.db import close_old_connections

START, END = b"\x0b", b"\x1c\x0d"
logger = logging.getLogger(__name__)


def frame(message: bytes) -> bytes:
    return START + message + END


class FrameReader:
    """Split a byte stream into MLLP frames, whatever size the reads arrive in."""

    def __init__(self, max_bytes: int) -> None:
        self.buffer = bytearray()
        self.max_bytes = max_bytes

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.buffer += data
        while True:
            start = self.buffer.find(START)
            if start < 0:
                self.buffer.clear()  # noise between frames
                return
            if start:
                del self.buffer[:start]
            end = self.buffer.find(END, 1)
            if end < 0:
                if len(self.buffer) > self.max_bytes + 2:
                    raise FrameTooLarge
                return
            message = bytes(self.buffer[1:end])
            del self.buffer[: end + len(END)]
            yield message


class FrameTooLarge(Exception):
    pass


Handler = Callable[[bytes], bytes]


def _handler_class(handle: Handler, max_bytes: int, idle_seconds: int) -> type:
    class MllpHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            sock.settimeout(idle_seconds)
            reader = FrameReader(max_bytes)
            try:
                while True:
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        return
                    if not data:
                        return  # the sender closed; a partial frame is dropped unacknowledged
                    for message in reader.feed(data):
                        close_old_connections()
                        sock.sendall(frame(handle(message)))
            except FrameTooLarge:
                logger.warning("mllp: frame over %s bytes from a connection; closed", max_bytes)
            except (ConnectionError, OSError) as exc:
                logger.info("mllp: connection ended: %s", type(exc).__name__)
            finally:
                close_old_connections()

    return MllpHandler


class MllpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def mllp_server(
    *, host: str, port: int, handle: Handler, max_bytes: int, idle_seconds: int = 300
) -> MllpServer:
    """A threaded MLLP server (not yet serving); call serve_forever() or run it in a thread."""
    return MllpServer((host, port), _handler_class(handle, max_bytes, idle_seconds))


def serve_in_thread(server: MllpServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="mllp", daemon=True)
    thread.start()
    return thread
