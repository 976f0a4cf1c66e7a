"""Listen for HL7 v2 over MLLP for one sending system (deploy runs it as its own process)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from ingestion.credentials import feed_credential_authenticate
from ingestion.mllp import FeedHandler, Limits, MllpServer

logger = logging.getLogger(__name__)
DEFAULTS = Limits(max_bytes=0)


class Command(BaseCommand):
    help = (
        "Accept HL7 v2 messages over MLLP and answer each with its ACK once it is stored. "
        "The sender is the feed credential in MLLP_FEED_TOKEN (or MLLP_FEED_TOKEN_FILE). "
        "SIGTERM or SIGINT stops it cleanly: messages being processed are finished and "
        "acknowledged, the rest are left unacknowledged for the sender to send again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.MLLP_HOST)
        parser.add_argument("--port", type=int, default=settings.MLLP_PORT)
        parser.add_argument(
            "--max-connections", type=int, default=DEFAULTS.max_connections,
            help="Connections open at once; more are closed as soon as they are accepted.",
        )  # fmt: skip
        parser.add_argument(
            "--workers", type=int, default=DEFAULTS.workers,
            help="Messages processed at once (each holds a database connection).",
        )  # fmt: skip
        parser.add_argument(
            "--idle-seconds", type=float, default=DEFAULTS.idle_seconds,
            help="Close a connection that sends nothing for this long between messages.",
        )  # fmt: skip
        parser.add_argument(
            "--frame-seconds", type=float, default=DEFAULTS.frame_seconds,
            help="Close a connection whose started message has not arrived whole in this time.",
        )  # fmt: skip
        parser.add_argument("--backlog", type=int, default=DEFAULTS.backlog)
        parser.add_argument(
            "--shutdown-seconds", type=float, default=DEFAULTS.shutdown_seconds,
            help="On a stop signal, how long messages being processed may take to finish.",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        token = _token()
        credential = feed_credential_authenticate(token=token)
        if credential is None:
            raise CommandError("MLLP_FEED_TOKEN is not a live feed credential.")
        ods = credential.organisation.ods_code
        connections.close_all()  # the workers open their own
        limits = Limits(
            max_bytes=settings.FEED_MAX_BYTES,
            max_connections=options["max_connections"],
            workers=options["workers"],
            idle_seconds=options["idle_seconds"],
            frame_seconds=options["frame_seconds"],
            backlog=options["backlog"],
            shutdown_seconds=options["shutdown_seconds"],
        )
        handler = FeedHandler(token=token, credential=credential, max_bytes=limits.max_bytes)
        server = MllpServer(handler=handler, limits=limits)

        def ready(host: str, port: int) -> None:
            self.stdout.write(f"mllp: listening on {host}:{port} for {ods}", ending="\n")
            self.stdout.flush()

        finished = asyncio.run(server.serve(options["host"], options["port"], on_ready=ready))
        connections.close_all()
        for wrapper in connections.all(initialized_only=True):
            close_pool = getattr(wrapper, "close_pool", None)  # PostgreSQL's psycopg pool
            if close_pool is not None and finished:
                close_pool()
        if not finished:
            # A worker thread is still inside a message; waiting for it could outlast the
            # orchestrator's grace period. Its transaction rolls back when the process
            # ends, and its sender, never acknowledged, sends the message again.
            logger.error("mllp: exiting with messages unfinished")
            logging.shutdown()
            os._exit(1)


def _token() -> str:
    if settings.MLLP_FEED_TOKEN_FILE:
        return Path(settings.MLLP_FEED_TOKEN_FILE).read_text().strip()
    token = settings.MLLP_FEED_TOKEN.strip()
    if not token:
        raise CommandError("Set MLLP_FEED_TOKEN or MLLP_FEED_TOKEN_FILE to a feed token.")
    return token
