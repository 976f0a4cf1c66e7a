"""The audit trail's tamper check: hash chains walked, checkpoints signed, findings sealed.

How tampering shows (audit.trail writes the chains):
1. audit_chain_verify walks every stripe in sequence order: a changed row
   breaks its own hash, a deleted row leaves a gap in `seq`, an inserted row
   duplicates a `seq` or fails to link, and a removed tail no longer matches
   the head.
2. A superuser who removes a tail *and* moves the head back (or rewrites a
   stripe and its head) leaves a chain that links. Checkpoints catch that:
   each records how far a stripe reached when it was last verified (seq,
   event, hash, count), signed with AUDIT_CHECKPOINT_KEY, which the
   processes that write events do not hold, and each is also logged, so a
   copy lives outside the database. The verifier then checks that every
   stripe still reaches its highest well-signed checkpoint with the same
   hash. Removing the checkpoints too is visible only against that log copy.
3. Governance findings (AccessReview) are append-only in PostgreSQL, and the
   AUDIT_REVIEW event written with each carries a digest of it, so a finding
   changed, removed or added outside the application no longer matches the
   (chained, checkpointed) trail.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AccessReview, AuditAction, AuditCheckpoint, AuditEvent
from audit.sql import CHAIN_STRIPES, GENESIS_HASH
from audit.trail import canonical_bytes, chain_link, event_hashed_fields

# Each checkpoint is also logged, so the log store keeps a copy outside the database.
checkpoint_logger = logging.getLogger("audit.checkpoint")


@dataclass(frozen=True)
class ChainBreak:
    stripe: int
    seq: int
    event_id: int | None
    problem: str


@dataclass(frozen=True)
class StripeEnd:
    """The last verified link of one stripe: what a checkpoint records."""

    stripe: int
    seq: int
    event_id: int
    hash: str
    events: int


@dataclass(frozen=True)
class FindingBreak:
    """A governance finding that no longer matches the audit event written with it."""

    review: str
    event_id: int | None
    problem: str


@dataclass
class ChainReport:
    events_checked: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)
    findings_checked: int = 0
    finding_breaks: list[FindingBreak] = field(default_factory=list)
    checkpoints_checked: int = 0
    latest_checkpoint_at: datetime.datetime | None = None
    # False when AUDIT_CHECKPOINT_KEY is not set: checkpoints were still
    # compared with the chain, but their signatures could not be checked.
    signatures_checked: bool = True
    # Intact stripes that have moved past their last checkpoint.
    new_ends: list[StripeEnd] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.breaks and not self.finding_breaks


def _stripe_events(stripe: int, *, after_seq: int | None = None) -> Iterator[AuditEvent]:
    """The stripe's rows in order: all of them (a forged seq of 0 included), or those after one."""
    events = AuditEvent.objects.filter(stripe=stripe)
    if after_seq is not None:
        events = events.filter(seq__gt=after_seq)
    return events.order_by("seq", "id").iterator(chunk_size=5000)


@dataclass
class _Walk:
    """One stripe walked in sequence order from a known link; checks stop at the first break."""

    stripe: int
    prev_hash: str = GENESIS_HASH
    seq: int = 0  # the last good link
    event_id: int | None = None
    events: int = 0  # rows of the stripe up to and including `seq`
    broken: ChainBreak | None = None

    def step(self, event: AuditEvent) -> bool:
        """Check the next row; True if it links on, False once the stripe is broken."""
        if self.broken:
            return False
        expected = self.seq + 1
        if event.seq < expected:
            problem = "sequence repeated: a row was inserted"
            self.broken = ChainBreak(self.stripe, event.seq, event.id, problem)
        elif event.seq > expected:
            self.broken = ChainBreak(
                self.stripe, expected, event.id,
                f"sequence jumps from {expected - 1} to {event.seq}: a row was deleted",
            )  # fmt: skip
        elif event.prev_hash != self.prev_hash:
            problem = "does not link to the previous row"
            self.broken = ChainBreak(self.stripe, event.seq, event.id, problem)
        elif chain_link(self.prev_hash, event_hashed_fields(event)) != event.hash:
            problem = "row content does not match its hash"
            self.broken = ChainBreak(self.stripe, event.seq, event.id, problem)
        else:
            self.prev_hash, self.seq, self.event_id = event.hash, event.seq, event.id
            self.events += 1
            return True
        return False

    def end(self) -> StripeEnd:
        assert self.event_id is not None
        return StripeEnd(self.stripe, self.seq, self.event_id, self.prev_hash, self.events)


def _when(checkpoint: AuditCheckpoint) -> str:
    return f"checkpoint {checkpoint.id} of {checkpoint.taken_at:%Y-%m-%d %H:%M:%S %Z}"


def _against_checkpoint(walk: _Walk, checkpoint: AuditCheckpoint) -> ChainBreak | None:
    """The walk has reached the checkpoint's seq: the same row, hash and count, or a break."""
    if (walk.event_id, walk.prev_hash, walk.events) == (
        checkpoint.event_id, checkpoint.hash, checkpoint.events,
    ):  # fmt: skip
        return None
    return ChainBreak(
        walk.stripe, walk.seq, walk.event_id,
        f"does not match {_when(checkpoint)}: the rows up to it were rewritten",
    )  # fmt: skip


def _tail_break(walk: _Walk, head: dict[str, Any], anchor: AuditCheckpoint | None) -> ChainBreak:
    """Why an unbroken walk ends where it does, if that is not where it should."""
    if anchor is not None and walk.seq < anchor.seq:
        return ChainBreak(
            walk.stripe, anchor.seq, anchor.event_id,
            f"{_when(anchor)} reached seq {anchor.seq}, but the chain ends at seq {walk.seq} "
            f"and its head says {head['seq']}: the last rows were deleted",
        )  # fmt: skip
    if head["seq"] < walk.seq:
        return ChainBreak(
            walk.stripe, head["seq"], None,
            f"the head is behind the chain's last row (seq {walk.seq}): it was moved back",
        )  # fmt: skip
    return ChainBreak(
        walk.stripe, head["seq"], None,
        "the chain ends before its recorded head: the last rows were deleted",
    )  # fmt: skip


def _checkpoint_key() -> bytes | None:
    """AUDIT_CHECKPOINT_KEY_FILE's content, or AUDIT_CHECKPOINT_KEY, or None if neither is set."""
    if settings.AUDIT_CHECKPOINT_KEY_FILE:
        try:
            value = Path(settings.AUDIT_CHECKPOINT_KEY_FILE).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                "AUDIT_CHECKPOINT_KEY_FILE names a file that cannot be read."
            ) from exc
    else:
        value = settings.AUDIT_CHECKPOINT_KEY.strip()
    if not value:
        return None
    if len(value) < 32:
        raise ImproperlyConfigured("AUDIT_CHECKPOINT_KEY must be at least 32 characters.")
    return value.encode()


def _signature(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _checkpoint_anchors(
    *, key: bytes | None, breaks: list[ChainBreak], report: ChainReport | None = None
) -> dict[int, AuditCheckpoint]:
    """Each stripe's highest checkpoint that carries a good signature (any, without a key).

    The highest, not the newest: a checkpoint forged to say less than the
    chain once reached is then never the one compared. Each checkpoint whose
    signature does not verify is added to `breaks`.
    """
    anchors: dict[int, AuditCheckpoint] = {}
    for checkpoint in AuditCheckpoint.objects.order_by("stripe", "-seq", "-id").iterator(
        chunk_size=5000
    ):
        if report is not None:
            report.checkpoints_checked += 1
            latest = report.latest_checkpoint_at
            if latest is None or checkpoint.taken_at > latest:
                report.latest_checkpoint_at = checkpoint.taken_at
        signed = key is None or hmac.compare_digest(
            checkpoint.signature, _signature(key, checkpoint.signed_message())
        )
        if not signed:
            problem = f"{_when(checkpoint)} is not signed with the checkpoint key: it was forged"
            breaks.append(
                ChainBreak(checkpoint.stripe, checkpoint.seq, None, f"{problem} or altered")
            )
            continue
        anchors.setdefault(checkpoint.stripe, checkpoint)
    return anchors


def review_digest(review: AccessReview) -> str:
    """A digest of everything a finding says, carried by its AUDIT_REVIEW event."""
    fields = {
        "public_id": str(review.public_id),
        "event_id": review.event_id,
        "event_occurred_at": review.event_occurred_at.astimezone(datetime.UTC).isoformat(
            timespec="microseconds"
        ),
        "outcome": str(review.outcome),
        "note": review.note,
        "reviewer_id": review.reviewer_id,
        "reviewer_name": review.reviewer_name,
        "reviewed_at": review.reviewed_at.astimezone(datetime.UTC).isoformat(
            timespec="microseconds"
        ),
    }
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


def _findings_verify(report: ChainReport, sealed_by: dict[str, AuditEvent]) -> None:
    """Compare every finding with the AUDIT_REVIEW event written with it (`sealed_by`)."""
    unmatched = dict(sealed_by)
    for review in AccessReview.objects.order_by("id").iterator(chunk_size=5000):
        report.findings_checked += 1
        public_id = str(review.public_id)
        event = unmatched.pop(public_id, None)
        if event is None:
            report.finding_breaks.append(FindingBreak(
                public_id, None, "has no audit event: it was added behind the application's back"
            ))  # fmt: skip
            continue
        digest = event.detail.get("review_sha256")
        if digest is not None:
            same = digest == review_digest(review)
        else:  # written before findings carried a digest: what the event names
            same = (event.detail.get("event"), event.detail.get("outcome")) == (
                review.event_id, review.outcome,
            )  # fmt: skip
        if not same:
            report.finding_breaks.append(FindingBreak(
                public_id, event.id, f"was changed after it was recorded (audit event {event.id})"
            ))  # fmt: skip
    for public_id, event in unmatched.items():
        report.finding_breaks.append(
            FindingBreak(public_id, event.id, f"recorded by audit event {event.id} was deleted")
        )


def audit_chain_verify() -> ChainReport:
    """Walk every stripe of the chain and report the first broken link of each.

    Also checks each stripe against its highest checkpoint (a removed tail, a
    head moved back, rows rewritten and relinked below it), every
    checkpoint's signature when AUDIT_CHECKPOINT_KEY is set, and every
    governance finding against the audit event written with it. Reads one
    snapshot (REPEATABLE READ) when called outside a transaction, so events
    written meanwhile do not look like a mismatched head.
    Side effects: none (read-only); the caller decides whether to checkpoint
    `new_ends` (audit_checkpoints_record).
    """
    key = _checkpoint_key()
    if connection.in_atomic_block:
        return _verify(key)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _verify(key)


def _verify(key: bytes | None) -> ChainReport:
    report = ChainReport(signatures_checked=key is not None)
    anchors = _checkpoint_anchors(key=key, breaks=report.breaks, report=report)
    heads = {row["stripe"]: row for row in _heads()}
    sealed_by: dict[str, AuditEvent] = {}
    for stripe in sorted(heads):
        anchor = anchors.get(stripe)
        walk = _Walk(stripe)
        for event in _stripe_events(stripe):
            report.events_checked += 1
            if event.action == AuditAction.AUDIT_REVIEW and "review" in event.detail:
                sealed_by[str(event.detail["review"])] = event
            if walk.step(event) and anchor is not None and walk.seq == anchor.seq:
                walk.broken = _against_checkpoint(walk, anchor)
        head = heads[stripe]
        ends_short = anchor is not None and walk.seq < anchor.seq
        if not walk.broken and (
            ends_short or head["seq"] != walk.seq or head["hash"] != walk.prev_hash
        ):
            walk.broken = _tail_break(walk, head, anchor)
        if walk.broken:
            report.breaks.append(walk.broken)
        elif walk.event_id is not None and (anchor is None or walk.seq > anchor.seq):
            report.new_ends.append(walk.end())
    _findings_verify(report, sealed_by)
    return report


class CheckpointKeyMissing(Exception):
    """Checkpoints are signed: set AUDIT_CHECKPOINT_KEY (or AUDIT_CHECKPOINT_KEY_FILE)."""


def audit_checkpoints_record(*, ends: Iterable[StripeEnd]) -> list[AuditCheckpoint]:
    """Sign and store one checkpoint for each stripe end given, and log each.

    Only ends that were just verified belong here (audit_chain_verify's
    `new_ends`, or audit_checkpoint_take's walk): a checkpoint vouches for
    every row up to it. Raises CheckpointKeyMissing without the key.
    Side effects: one audit_checkpoint row per end; one INFO line each on the
    "audit.checkpoint" logger (stripe, seq, event id, count, a hash prefix:
    nothing personal) for the log store to keep.
    """
    key = _checkpoint_key()
    if key is None:
        raise CheckpointKeyMissing(
            "Set AUDIT_CHECKPOINT_KEY (or AUDIT_CHECKPOINT_KEY_FILE) to write checkpoints."
        )
    taken_at = timezone.now()
    written: list[AuditCheckpoint] = []
    with transaction.atomic():
        for end in ends:
            checkpoint = AuditCheckpoint(
                taken_at=taken_at,
                stripe=end.stripe,
                seq=end.seq,
                event_id=end.event_id,
                hash=end.hash,
                events=end.events,
            )
            checkpoint.signature = _signature(key, checkpoint.signed_message())
            checkpoint.full_clean()
            checkpoint.save()
            written.append(checkpoint)
    for checkpoint in written:
        checkpoint_logger.info(
            "audit checkpoint %s: stripe=%s seq=%s event=%s events=%s hash=%s taken_at=%s",
            checkpoint.id, checkpoint.stripe, checkpoint.seq, checkpoint.event_id,
            checkpoint.events, checkpoint.hash[:16], checkpoint.taken_at.isoformat(),
        )  # fmt: skip
    return written


@dataclass
class CheckpointRun:
    written: list[AuditCheckpoint] = field(default_factory=list)
    breaks: list[ChainBreak] = field(default_factory=list)


def _anchor_break(anchor: AuditCheckpoint) -> ChainBreak | None:
    """The checkpointed row must still be there, once, unchanged."""
    rows = list(
        AuditEvent.objects.filter(stripe=anchor.stripe, seq=anchor.seq).values_list("id", "hash")
    )
    if rows == [(anchor.event_id, anchor.hash)]:
        return None
    return ChainBreak(
        anchor.stripe, anchor.seq, anchor.event_id,
        f"the row {_when(anchor)} vouches for is missing or changed: "
        "rows up to it were deleted or rewritten",
    )  # fmt: skip


def audit_checkpoint_take() -> CheckpointRun:
    """Verify each stripe from its last checkpoint to its newest row, then checkpoint it.

    1. A stripe's anchor is its highest checkpoint with a good signature
       (each bad one is reported).
    2. The anchor's row must still be there, unchanged.
    3. The rows after it are walked link by link, as audit_chain_verify does.
    4. A stripe that has moved on and holds is checkpointed; one that does
       not hold is reported and gets no checkpoint, so tampering is never
       vouched for. (A full audit_verify also checks what this does not:
       the heads, the findings, and every row below the anchors.)
    Raises CheckpointKeyMissing without the key.
    Side effects: audit_checkpoint rows and their log lines.
    """
    key = _checkpoint_key()
    if key is None:
        raise CheckpointKeyMissing(
            "Set AUDIT_CHECKPOINT_KEY (or AUDIT_CHECKPOINT_KEY_FILE) to write checkpoints."
        )
    run = CheckpointRun()
    anchors = _checkpoint_anchors(key=key, breaks=run.breaks)
    ends: list[StripeEnd] = []
    for stripe in range(CHAIN_STRIPES):
        anchor = anchors.get(stripe)
        walk = _Walk(stripe)
        if anchor is not None:
            broken = _anchor_break(anchor)
            if broken:
                run.breaks.append(broken)
                continue
            walk = _Walk(stripe, anchor.hash, anchor.seq, anchor.event_id, anchor.events)
        for event in _stripe_events(stripe, after_seq=walk.seq if anchor else None):
            if not walk.step(event):
                break
        if walk.broken:
            run.breaks.append(walk.broken)
        elif walk.event_id is not None and (anchor is None or walk.seq > anchor.seq):
            ends.append(walk.end())
    run.written = audit_checkpoints_record(ends=ends)
    return run


def _heads() -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT stripe, seq, hash FROM audit_chain_head ORDER BY stripe")
        return [{"stripe": s, "seq": q, "hash": h} for s, q, h in cursor.fetchall()]
