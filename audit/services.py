"""The single entry point that writes the audit trail, its tamper check, and governance.

Chaining (why it stays cheap under load):
1. The trail is split into CHAIN_STRIPES independent hash chains. A writer
   uses the stripe of its database connection (backend pid modulo the stripe
   count), so all events of one transaction share one stripe and two
   transactions never wait on each other in opposite orders.
2. The writer locks only its stripe's head row (SELECT ... FOR UPDATE),
   computes sha256(previous hash + canonical row), inserts the row and moves
   the head. Concurrent writers on different connections spread over 16
   heads instead of queueing on one hot row.
3. audit_chain_verify walks every stripe in sequence order: a changed row
   breaks its own hash, a deleted row leaves a gap in `seq`, an inserted row
   duplicates a `seq` or fails to link, and a removed tail no longer matches
   the head.
4. A superuser who removes a tail *and* moves the head back (or rewrites a
   stripe and its head) leaves a chain that links. Checkpoints catch that:
   each records how far a stripe reached when it was last verified (seq,
   event, hash, count), signed with AUDIT_CHECKPOINT_KEY, which the
   processes that write events do not hold, and each is also logged, so a
   copy lives outside the database. The verifier then checks that every
   stripe still reaches its highest well-signed checkpoint with the same
   hash. Removing the checkpoints too is visible only against that log copy.
5. Governance findings (AccessReview) are append-only in PostgreSQL, and the
   AUDIT_REVIEW event written with each carries a digest of it, so a finding
   changed, removed or added outside the application no longer matches the
   (chained, checkpointed) trail.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from audit.models import (
    CLOSING_OUTCOMES,
    AccessReview,
    ActorType,
    AuditAction,
    AuditCheckpoint,
    AuditEvent,
    AuditOutcome,
    ReviewOutcome,
)
from audit.selectors import (
    AuditQuery,
    Cursor,
    EventPage,
    GovernanceScope,
    ScopeKind,
    access_reviews_for,
    audit_event_in_scopes,
    audit_events_about,
    audit_events_page,
    audit_events_stream,
    audit_review_queue,
)
from audit.sql import CHAIN_STRIPES, GENESIS_HASH

# Each checkpoint is also logged, so the log store keeps a copy outside the database.
checkpoint_logger = logging.getLogger("audit.checkpoint")


@dataclass(frozen=True)
class AuditActor:
    """Who did it: a member of staff, a partner system or an anonymous caller."""

    type: ActorType
    name: str
    id: uuid.UUID | None = None
    role: str = ""
    role_code: str = ""
    org_ods: str = ""

    @classmethod
    def system(cls, name: str, *, org_ods: str = "", id: uuid.UUID | None = None) -> AuditActor:
        return cls(type=ActorType.SYSTEM, name=name, org_ods=org_ods, id=id)

    @classmethod
    def anonymous(cls, claimed_name: str = "") -> AuditActor:
        return cls(type=ActorType.ANONYMOUS, name=claimed_name[:150])


@dataclass(frozen=True)
class AuditSubject:
    """The person concerned, as the caller knows them."""

    patient_id: uuid.UUID | None = None
    nhs_number: str = ""
    gp_ods: str = ""


@dataclass(frozen=True)
class AuditContext:
    """Where the request came from."""

    request_id: str = ""
    client_address: str | None = None


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


def _canonical(row: dict[str, Any]) -> bytes:
    return json.dumps(row, sort_keys=True, separators=(",", ":"), default=str).encode()


def _hashed_fields(
    *,
    occurred_at: datetime.datetime,
    stripe: int,
    seq: int,
    action: str,
    outcome: str,
    actor_type: str,
    actor_id: uuid.UUID | None,
    actor_name: str,
    actor_role: str,
    actor_role_code: str,
    actor_org_ods: str,
    patient_id: uuid.UUID | None,
    nhs_number: str,
    patient_gp_ods: str,
    source_ods: Sequence[str],
    purpose: str,
    detail: dict[str, Any],
    request_id: str,
    client_address: str | None,
) -> dict[str, Any]:
    return {
        "occurred_at": occurred_at.astimezone(datetime.UTC).isoformat(timespec="microseconds"),
        "stripe": stripe,
        "seq": seq,
        "action": action,
        "outcome": outcome,
        "actor_type": actor_type,
        "actor_id": str(actor_id) if actor_id else None,
        "actor_name": actor_name,
        "actor_role": actor_role,
        "actor_role_code": actor_role_code,
        "actor_org_ods": actor_org_ods,
        "patient_id": str(patient_id) if patient_id else None,
        "nhs_number": nhs_number,
        "patient_gp_ods": patient_gp_ods,
        "source_ods": list(source_ods),
        "purpose": purpose,
        "detail": detail,
        "request_id": request_id,
        "client_address": client_address,
    }


def _link(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + _canonical(fields)).hexdigest()


def _stripe() -> int:
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    return int(pid) % CHAIN_STRIPES


def audit_event_record(
    *,
    action: AuditAction,
    actor: AuditActor,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    subject: AuditSubject | None = None,
    purpose: str = "",
    detail: dict[str, Any] | None = None,
    source_ods: Iterable[str] = (),
    context: AuditContext | None = None,
) -> int:
    """Append one event to the trail inside the caller's transaction; return its id.

    Guarantees: the event commits or rolls back with the caller's work, so a
    read that must be audited fails if this write fails. `detail` holds ids,
    sections and counts, never clinical content.
    Side effects: one row in audit_event, its stripe's head moved on.
    """
    subject = subject or AuditSubject()
    context = context or AuditContext()
    # A round trip through JSON keeps the hashed detail identical to what
    # PostgreSQL's jsonb hands back to the verifier.
    detail = json.loads(json.dumps(detail or {}, default=str))
    occurred_at = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        stripe = _stripe()
        cursor.execute(
            "SELECT seq, hash FROM audit_chain_head WHERE stripe = %s FOR UPDATE", [stripe]
        )
        head_seq, head_hash = cursor.fetchone()
        seq = head_seq + 1
        fields = _hashed_fields(
            occurred_at=occurred_at,
            stripe=stripe,
            seq=seq,
            action=str(action),
            outcome=str(outcome),
            actor_type=str(actor.type),
            actor_id=actor.id,
            actor_name=actor.name[:150],
            actor_role=actor.role,
            actor_role_code=actor.role_code,
            actor_org_ods=actor.org_ods,
            patient_id=subject.patient_id,
            nhs_number=subject.nhs_number,
            patient_gp_ods=subject.gp_ods,
            source_ods=sorted(set(source_ods)),
            purpose=purpose,
            detail=detail,
            request_id=context.request_id[:64],
            client_address=context.client_address,
        )
        digest = _link(head_hash, fields)
        cursor.execute(
            """
            INSERT INTO audit_event (
                occurred_at, stripe, seq, prev_hash, hash, action, outcome, actor_type,
                actor_id, actor_name, actor_role, actor_role_code, actor_org_ods, patient_id,
                nhs_number, patient_gp_ods, source_ods, purpose, detail, request_id,
                client_address
            ) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                      %s::jsonb, %s, %s)
            RETURNING id
            """,
            [
                occurred_at, stripe, seq, head_hash, digest, fields["action"], fields["outcome"],
                fields["actor_type"], actor.id, fields["actor_name"], fields["actor_role"],
                fields["actor_role_code"], fields["actor_org_ods"], subject.patient_id,
                fields["nhs_number"], fields["patient_gp_ods"], fields["source_ods"],
                fields["purpose"], json.dumps(detail), fields["request_id"],
                fields["client_address"],
            ],
        )  # fmt: skip
        (event_id,) = cursor.fetchone()
        cursor.execute(
            "UPDATE audit_chain_head SET seq = %s, hash = %s WHERE stripe = %s",
            [seq, digest, stripe],
        )
    return int(event_id)


def _event_fields(event: AuditEvent) -> dict[str, Any]:
    return _hashed_fields(
        occurred_at=event.occurred_at,
        stripe=event.stripe,
        seq=event.seq,
        action=event.action,
        outcome=event.outcome,
        actor_type=event.actor_type,
        actor_id=event.actor_id,
        actor_name=event.actor_name,
        actor_role=event.actor_role,
        actor_role_code=event.actor_role_code,
        actor_org_ods=event.actor_org_ods,
        patient_id=event.patient_id,
        nhs_number=event.nhs_number,
        patient_gp_ods=event.patient_gp_ods,
        source_ods=event.source_ods,
        purpose=event.purpose,
        detail=event.detail,
        request_id=event.request_id,
        client_address=event.client_address,
    )


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
        elif _link(self.prev_hash, _event_fields(event)) != event.hash:
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


def _review_digest(review: AccessReview) -> str:
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
    return hashlib.sha256(_canonical(fields)).hexdigest()


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
            same = digest == _review_digest(review)
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


def audit_partitions_ensure(*, months_ahead: int = 3) -> int:
    """Create the monthly partitions up to `months_ahead` months ahead; return how many.

    Side effects: DDL (new partitions, each guarded against TRUNCATE).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT audit_partitions_ensure(date_trunc('month', now())::date, %s)", [months_ahead]
        )
        (made,) = cursor.fetchone()
    return int(made)


# ------------------------------------------------------------------ governance


class ScopeUnknown(Exception):
    """A request named a part of the trail that does not exist (neither holder nor staff)."""


@dataclass(frozen=True)
class GovernanceViewer:
    """A member of staff who may read the trail: who they are, and how much they may see.

    `scope` is the part of the trail they are reading now; `held` lists every
    part they may read, the default first (empty: `scope` alone). Lists and
    searches read `scope`; one event may be opened or reviewed if any scope
    held contains it.
    """

    user: Any
    actor: AuditActor
    scope: GovernanceScope
    held: tuple[GovernanceScope, ...] = ()

    @property
    def scopes(self) -> tuple[GovernanceScope, ...]:
        """Every scope held, the one in use first."""
        return (self.scope, *(scope for scope in self.held if scope != self.scope))

    @property
    def switchable(self) -> bool:
        """True when the viewer holds more than one scope (the pages show a switch)."""
        return len(self.scopes) > 1

    def in_scope(self, kind: str) -> GovernanceViewer:
        """The same viewer reading the scope of that kind; "" keeps the scope in use.

        A viewer of the whole trail stays on it, whichever kind is asked for:
        the switch never narrows the programme's officers.
        Raises ScopeUnknown for a kind that is not one of ScopeKind's, or one
        the viewer does not hold.
        """
        if not kind:
            return self
        if kind not in ScopeKind.values:
            raise ScopeUnknown(f"Choose {' or '.join(ScopeKind.values)} for the scope.")
        for scope in self.scopes:
            if scope.covers(kind):
                return replace(self, scope=scope)
        raise ScopeUnknown("You do not hold that part of the audit trail.")


GovernanceResolver = Callable[[Any], GovernanceViewer | None]
_resolvers: list[GovernanceResolver] = []


def governance_resolver_register(resolver: GovernanceResolver) -> None:
    """Say who may read the trail. The app that owns users registers this at start-up.

    The audit app imports none of ours, so it cannot know roles itself.
    """
    if resolver not in _resolvers:
        _resolvers.append(resolver)


def governance_viewer_of(user: Any) -> GovernanceViewer | None:
    """The governance viewer for this user, or None if they may not read the trail."""
    if not _resolvers:
        raise RuntimeError("No governance resolver is registered.")
    return _resolvers[0](user)


def audit_search(
    *,
    viewer: GovernanceViewer,
    query: AuditQuery,
    after: Cursor | None,
    context: AuditContext,
    via: str = "page",
) -> EventPage:
    """A page of the trail for a governance officer, in the scope they are reading.

    Side effects: one AUDIT_QUERY event naming the scope, the filters and how
    many rows were shown.
    """
    with transaction.atomic():
        page = audit_events_page(scope=viewer.scope, query=query, after=after)
        audit_event_record(
            action=AuditAction.AUDIT_QUERY,
            actor=viewer.actor,
            subject=AuditSubject(nhs_number=query.nhs_number),
            purpose="HOPERAT",
            detail={"via": via, "filters": query.filters(), "shown": len(page.events),
                    **viewer.scope.audit_detail(), "page": after is not None},
            context=context,
        )  # fmt: skip
    return page


def audit_export(
    *, viewer: GovernanceViewer, query: AuditQuery, context: AuditContext
) -> Iterator[AuditEvent]:
    """Every matching event for a CSV export, streamed.

    The AUDIT_EXPORT event commits before the first row is read, so an
    export that is cut off half way is still on the record.
    Side effects: one AUDIT_EXPORT event naming the scope and the filters.
    """
    audit_event_record(
        action=AuditAction.AUDIT_EXPORT,
        actor=viewer.actor,
        subject=AuditSubject(nhs_number=query.nhs_number),
        purpose="HOPERAT",
        detail={"format": "csv", "filters": query.filters(), **viewer.scope.audit_detail()},
        context=context,
    )  # fmt: skip
    return audit_events_stream(scope=viewer.scope, query=query)


class ReviewRefused(Exception):
    """The access cannot be reviewed (not found in scope, not flagged, or already closed)."""


@transaction.atomic
def access_review_record(
    *,
    viewer: GovernanceViewer,
    event_id: int,
    outcome: ReviewOutcome,
    note: str,
    context: AuditContext,
) -> AccessReview:
    """Record a finding on one flagged access; a referral leaves it open for a final finding.

    Raises ReviewRefused if the event is in none of the scopes the viewer
    holds (a record holder's officer reviews accesses to its record and its
    own staff's accesses, nothing else), was not flagged for review, or
    already has a closing finding, or the note is empty.
    Side effects: one AccessReview row and one AUDIT_REVIEW event naming the
    scope that holds the event and carrying a digest of the finding, which
    audit_verify compares with the row.
    """
    found = audit_event_in_scopes(scopes=viewer.scopes, event_id=event_id)
    # Rows written before the flag was renamed carry it as a boolean "review".
    if found is None or not (
        found[0].detail.get("needs_review") or found[0].detail.get("review") is True
    ):
        raise ReviewRefused("There is no access awaiting review with that number.")
    event, scope = found
    if AccessReview.objects.filter(event_id=event_id, outcome__in=CLOSING_OUTCOMES).exists():
        raise ReviewRefused("This access has already been reviewed.")
    if not note.strip():
        raise ReviewRefused("Write a note saying why you reached this finding.")
    review = AccessReview(
        event_id=event.id,
        event_occurred_at=event.occurred_at,
        outcome=outcome,
        note=note.strip(),
        reviewer=viewer.user,
        reviewer_name=viewer.actor.name,
    )
    review.full_clean()
    review.save()
    audit_event_record(
        action=AuditAction.AUDIT_REVIEW,
        actor=viewer.actor,
        subject=AuditSubject(
            patient_id=event.patient_id, nhs_number=event.nhs_number, gp_ods=event.patient_gp_ods
        ),
        purpose="HOPERAT",
        detail={"event": event.id, "review": str(review.public_id), "outcome": str(outcome),
                "reviewed_action": event.action, "reviewed_actor": event.actor_name,
                "review_sha256": _review_digest(review), **scope.audit_detail()},
        context=context,
    )  # fmt: skip
    return review


@dataclass(frozen=True)
class SubjectAccessReport:
    nhs_number: str
    produced_at: datetime.datetime
    produced_by: str
    scope: GovernanceScope
    events: list[AuditEvent]

    @property
    def emergency_count(self) -> int:
        return sum(1 for e in self.events if e.action == AuditAction.BREAK_GLASS)


@transaction.atomic
def subject_access_report(
    *, viewer: GovernanceViewer, nhs_number: str, context: AuditContext
) -> SubjectAccessReport:
    """Who was shown what about one person, when, from where, and why.

    Side effects: one SUBJECT_ACCESS_REPORT event.
    """
    events = audit_events_about(scope=viewer.scope, nhs_number=nhs_number)
    audit_event_record(
        action=AuditAction.SUBJECT_ACCESS_REPORT,
        actor=viewer.actor,
        subject=AuditSubject(nhs_number=nhs_number),
        purpose="HOPERAT",
        detail={"events": len(events), **viewer.scope.audit_detail()},
        context=context,
    )
    return SubjectAccessReport(nhs_number, timezone.now(), viewer.actor.name, viewer.scope, events)


def audit_review_queue_view(
    *, viewer: GovernanceViewer, context: AuditContext, limit: int = 200
) -> tuple[list[AuditEvent], int]:
    """The oldest open flagged accesses (up to `limit`) and how many are open in all.

    Side effects: one AUDIT_QUERY event naming the rows shown.
    """
    with transaction.atomic():
        queue = audit_review_queue(scope=viewer.scope)
        events = list(queue[:limit])
        total = queue.count()
        audit_event_record(
            action=AuditAction.AUDIT_QUERY,
            actor=viewer.actor,
            purpose="HOPERAT",
            detail={"via": "review-queue", "shown": [e.id for e in events],
                    **viewer.scope.audit_detail()},
            context=context,
        )  # fmt: skip
    return events, total


def audit_event_view(
    *, viewer: GovernanceViewer, event_id: int, context: AuditContext
) -> tuple[AuditEvent, list[AccessReview]] | None:
    """One event in any scope the viewer holds, with its findings, or None.

    None alike for absent and out of every scope held. The scope in use is
    tried first.
    Side effects: one AUDIT_QUERY event when the event is shown, naming the
    scope that holds it.
    """
    with transaction.atomic():
        found = audit_event_in_scopes(scopes=viewer.scopes, event_id=event_id)
        if found is None:
            return None
        event, scope = found
        audit_event_record(
            action=AuditAction.AUDIT_QUERY,
            actor=viewer.actor,
            subject=AuditSubject(nhs_number=event.nhs_number),
            purpose="HOPERAT",
            detail={"via": "event", "shown": [event.id], **scope.audit_detail()},
            context=context,
        )  # fmt: skip
        return event, access_reviews_for(event_id=event.id)


def audit_unreviewed_count(*, viewer: GovernanceViewer) -> int:
    """How many flagged accesses in the scope in use await a finding (a count: not audited)."""
    return audit_review_queue(scope=viewer.scope).count()
