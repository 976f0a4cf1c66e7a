"""A real HTTP receiver on localhost for subscriptions' notifications (started by the tests)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def bundle(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def status(self) -> dict[str, str]:
        """The status Parameters' simple values by name."""
        params = self.bundle["entry"][0]["resource"]["parameter"]
        return {
            p["name"]: next(v for k, v in p.items() if k.startswith("value"))
            for p in params
            if "part" not in p and p["name"] != "subscription"
        }

    @property
    def events(self) -> list[dict[str, Any]]:
        params = self.bundle["entry"][0]["resource"]["parameter"]
        found = []
        for p in params:
            if p["name"] == "notification-event":
                parts = {q["name"]: q for q in p["part"]}
                found.append(
                    {
                        "number": int(parts["event-number"]["valueString"]),
                        "focus": parts.get("focus", {})
                        .get("valueReference", {})
                        .get("reference", ""),
                        "extension": p.get("extension", []),
                    }
                )
        return found


@dataclass
class Receiver:
    """Records every POST; answers `failing` of them with 503 first."""

    failing: int = 0
    received: list[Received] = field(default_factory=list)
    refused: int = 0
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    if receiver.failing > 0:
                        receiver.failing -= 1
                        receiver.refused += 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    receiver.received.append(Received(dict(self.headers.items()), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def of_type(self, kind: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.status.get("type") == kind]

    def wait_for(self, check: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise AssertionError(f"the receiver did not get what was awaited: {self.received}")
