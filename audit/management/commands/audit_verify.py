"""Walk the audit trail's hash chains and report the first broken link of each."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.integrity import (
    ChainReport,
    CheckpointKeyMissing,
    audit_chain_verify,
    audit_checkpoints_record,
)
from audit.metrics import audit_verify_outcome_note


class Command(BaseCommand):
    help = (
        "Check the audit trail has not been changed, deleted from or inserted into, "
        "then checkpoint every intact stripe."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_chain_verify()
        audit_verify_outcome_note(intact=report.intact, events_checked=report.events_checked)
        self._checkpoint(report)
        if report.intact:
            self.stdout.write(
                f"Audit trail intact: {report.events_checked} events checked, "
                f"{report.findings_checked} findings checked, against "
                f"{report.checkpoints_checked} checkpoints{self._latest(report)}."
            )
            return
        for broken in report.breaks:
            where = f"event {broken.event_id}" if broken.event_id is not None else "chain head"
            self.stderr.write(
                f"BROKEN stripe {broken.stripe} at seq {broken.seq} ({where}): {broken.problem}"
            )
        for finding in report.finding_breaks:
            self.stderr.write(f"BROKEN finding {finding.review}: {finding.problem}")
        raise CommandError(
            f"Audit trail tampered with: {len(report.breaks)} broken chain(s) "
            f"in {report.events_checked} events, {len(report.finding_breaks)} finding(s) "
            f"not as recorded."
        )

    def _checkpoint(self, report: ChainReport) -> None:
        """Checkpoint the stripes that verified and moved on (the broken ones never)."""
        if not report.signatures_checked:
            self.stderr.write(
                "WARNING AUDIT_CHECKPOINT_KEY is not set: checkpoints were compared with the "
                "chain but their signatures were not checked, and no checkpoint was written."
            )
            return
        try:
            written = audit_checkpoints_record(ends=report.new_ends)
        except CheckpointKeyMissing:  # pragma: no cover - the key was read moments ago
            return
        if written:
            self.stdout.write(f"Checkpointed {len(written)} stripe(s).")

    @staticmethod
    def _latest(report: ChainReport) -> str:
        if report.latest_checkpoint_at is None:
            return ""
        return f" (the latest taken at {report.latest_checkpoint_at:%Y-%m-%d %H:%M:%S %Z})"
