"""Checkpoint the audit trail's chain heads: verify each stripe since its last checkpoint."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from audit.integrity import CheckpointKeyMissing, CheckpointRun, audit_checkpoint_take

logger = logging.getLogger("audit.checkpoint")


class Command(BaseCommand):
    help = (
        "Verify each stripe of the audit trail since its last checkpoint and checkpoint it "
        "(signed with AUDIT_CHECKPOINT_KEY, and logged). Run it periodically, for example "
        "with --every 300, in a process that alone holds the key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every",
            type=int,
            default=0,
            metavar="SECONDS",
            help="keep running, checkpointing every SECONDS (default: once, then exit)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        every: int = options["every"]
        if every < 0:
            raise CommandError("--every must be a number of seconds.")
        while True:
            try:
                run = audit_checkpoint_take()
            except CheckpointKeyMissing as exc:
                raise CommandError(str(exc)) from exc
            self._report(run)
            if not every:
                break
            if run.breaks:
                # Keep checkpointing the stripes that hold; the log store alerts on this.
                logger.error("audit trail: %s stripe(s) not checkpointed", len(run.breaks))
            close_old_connections()
            time.sleep(every)
        if run.breaks:
            raise CommandError(
                f"{len(run.breaks)} stripe(s) not checkpointed: the audit trail was tampered "
                "with. Run audit_verify for the whole picture."
            )

    def _report(self, run: CheckpointRun) -> None:
        for checkpoint in run.written:
            self.stdout.write(
                f"Checkpoint {checkpoint.id}, stripe {checkpoint.stripe}: seq {checkpoint.seq}, "
                f"event {checkpoint.event_id}, {checkpoint.events} events, "
                f"hash {checkpoint.hash[:16]}"
            )
        for broken in run.breaks:
            where = f"event {broken.event_id}" if broken.event_id is not None else "chain head"
            self.stderr.write(
                f"BROKEN stripe {broken.stripe} at seq {broken.seq} ({where}): {broken.problem}"
            )
        if not run.written and not run.breaks:
            self.stdout.write("Nothing new to checkpoint.")
