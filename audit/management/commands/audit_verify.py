"""Walk the audit trail's hash chains and report the first broken link of each."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.services import audit_chain_verify


class Command(BaseCommand):
    help = "Check the audit trail has not been changed, deleted from or inserted into."

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_chain_verify()
        if report.intact:
            self.stdout.write(f"Audit trail intact: {report.events_checked} events checked.")
            return
        for broken in report.breaks:
            where = f"event {broken.event_id}" if broken.event_id is not None else "chain head"
            self.stderr.write(
                f"BROKEN stripe {broken.stripe} at seq {broken.seq} ({where}): {broken.problem}"
            )
        raise CommandError(
            f"Audit trail tampered with: {len(report.breaks)} broken chain(s) "
            f"in {report.events_checked} events."
        )
