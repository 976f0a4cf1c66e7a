"""Listen for HL7 v2 over MLLP for one sending system (deploy runs it as its own process)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingestion import hl7v2
from ingestion.mllp import mllp_server
from ingestion.services import feed_credential_authenticate, hl7_message_receive


class Command(BaseCommand):
    help = (
        "Accept HL7 v2 messages over MLLP and answer each with its ACK once it is stored. "
        "The sender is the feed credential in MLLP_FEED_TOKEN (or MLLP_FEED_TOKEN_FILE)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.MLLP_HOST)
        parser.add_argument("--port", type=int, default=settings.MLLP_PORT)
        parser.add_argument("--idle-seconds", type=int, default=300)

    def handle(self, *args: Any, **options: Any) -> None:
        token = _token()
        credential = feed_credential_authenticate(token=token)
        if credential is None:
            raise CommandError("MLLP_FEED_TOKEN is not a live feed credential.")
        ods = credential.organisation.ods_code

        def receive(message: bytes) -> bytes:
            current = feed_credential_authenticate(token=token)  # revocation applies at once
            if current is None:
                problem = hl7v2.Hl7Problem("", 0, 0, "207", "The feed credential was revoked.")
                return hl7v2.ack(header=None, code="AR", problems=[problem], text=problem.message)
            return hl7_message_receive(credential=current, payload=message).ack

        server = mllp_server(
            host=options["host"], port=options["port"], handle=receive,
            max_bytes=settings.FEED_MAX_BYTES, idle_seconds=options["idle_seconds"],
        )  # fmt: skip
        signal.signal(signal.SIGTERM, _stop)
        host, port = server.socket.getsockname()[:2]
        self.stdout.write(f"mllp: listening on {host}:{port} for {ods}", ending="\n")
        self.stdout.flush()
        try:
            server.serve_forever()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            server.server_close()


def _stop(*_: Any) -> None:
    # serve_forever runs on this thread, so shutdown() here would wait for itself.
    raise SystemExit(0)


def _token() -> str:
    if settings.MLLP_FEED_TOKEN_FILE:
        return Path(settings.MLLP_FEED_TOKEN_FILE).read_text().strip()
    token = settings.MLLP_FEED_TOKEN.strip()
    if not token:
        raise CommandError("Set MLLP_FEED_TOKEN or MLLP_FEED_TOKEN_FILE to a feed token.")
    return token
