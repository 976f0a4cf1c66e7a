"""The only writers of the audit trail (one event, or a batch in two statements), and its storage.

Chaining (why it stays cheap under load):
1. The trail is split into CHAIN_STRIPES independent hash chains. A writer
   uses the stripe of its database connection (backend pid modulo the stripe
   count), so all events of one transaction share one stripe and two
   transactions never wait on each other in opposite orders.
2. The writer locks only its stripe's head row (SELECT ... FOR UPDATE),
   computes sha256(previous hash + canonical row), inserts the row and moves
   the head. Concurrent writers on different connections spread over 16
   heads instead of queueing on one hot row.
The tamper check that walks these chains is audit.integrity's.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.metrics import AUDIT_WRITE_SECONDS
from audit.models import ActorType, AuditAction, AuditEvent, AuditOutcome
from audit.sql import CHAIN_STRIPES


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


def canonical_bytes(row: dict[str, Any]) -> bytes:
    """The bytes a row is hashed as: sorted keys, no spaces, so writer and verifier agree."""
    return json.dumps(row, sort_keys=True, separators=(",", ":"), default=str).encode()


def hashed_fields(
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
    """The fields of an event that its hash covers, as JSON-ready values."""
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


def chain_link(prev_hash: str, fields: dict[str, Any]) -> str:
    """The hash of a row: sha256 of the previous row's hash and this row's canonical bytes."""
    return hashlib.sha256(prev_hash.encode() + canonical_bytes(fields)).hexdigest()


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
    # PostgreSQL's jsonb hands back to the verifier. The text is written as made
    # (an API read's detail names thousands of entries: it is encoded once here).
    detail_text = json.dumps(detail or {}, default=str)
    detail = json.loads(detail_text)
    occurred_at = timezone.now()
    # Two statements: lock the stripe's head (its hash is the new row's
    # prev_hash), then insert the row and move the head in one. No savepoint:
    # a failure here fails the caller's whole transaction, as it must.
    with (
        AUDIT_WRITE_SECONDS.labels("event").time(),
        transaction.atomic(savepoint=False),
        connection.cursor() as cursor,
    ):
        stripe = _stripe()
        cursor.execute(
            "SELECT seq, hash FROM audit_chain_head WHERE stripe = %s FOR UPDATE", [stripe]
        )
        head_seq, head_hash = cursor.fetchone()
        seq = head_seq + 1
        fields = hashed_fields(
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
        digest = chain_link(head_hash, fields)
        cursor.execute(
            _INSERT_EVENTS.format(values=_ROW_MARKS),
            [
                occurred_at, stripe, seq, head_hash, digest, fields["action"], fields["outcome"],
                fields["actor_type"], actor.id, fields["actor_name"], fields["actor_role"],
                fields["actor_role_code"], fields["actor_org_ods"], subject.patient_id,
                fields["nhs_number"], fields["patient_gp_ods"], fields["source_ods"],
                fields["purpose"], detail_text, fields["request_id"],
                fields["client_address"], seq, digest, stripe,
            ],
        )  # fmt: skip
        (event_id,) = cursor.fetchone()
    return int(event_id)


def event_hashed_fields(event: AuditEvent) -> dict[str, Any]:
    """The hashed fields of a stored event, for the verifier to recompute its hash."""
    return hashed_fields(
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


@dataclass(frozen=True)
class PendingEvent:
    """One event for audit_events_record: the arguments audit_event_record takes."""

    action: AuditAction
    actor: AuditActor
    outcome: AuditOutcome = AuditOutcome.SUCCESS
    subject: AuditSubject | None = None
    purpose: str = ""
    detail: dict[str, Any] | None = None
    source_ods: tuple[str, ...] = ()
    context: AuditContext | None = None


def audit_events_record(*, events: Sequence[PendingEvent]) -> list[int]:
    """Append several events to the trail inside the caller's transaction; return their ids.

    The same events, hashes and guarantees as calling audit_event_record for
    each in order (they take consecutive places in one stripe's chain and
    commit or roll back with the caller's work), in two statements however
    many there are: lock the stripe's head, then insert every row and move
    the head in one. For a worker that audits each person a message matched.
    Side effects: one row in audit_event per event, its stripe's head moved on.
    """
    if not events:
        return []
    occurred_at = timezone.now()
    rows: list[list[Any]] = []
    with (
        AUDIT_WRITE_SECONDS.labels("batch").time(),
        transaction.atomic(savepoint=False),
        connection.cursor() as cursor,
    ):
        stripe = _stripe()
        cursor.execute(
            "SELECT seq, hash FROM audit_chain_head WHERE stripe = %s FOR UPDATE", [stripe]
        )
        seq, head_hash = cursor.fetchone()
        for event in events:
            subject = event.subject or AuditSubject()
            context = event.context or AuditContext()
            actor = event.actor
            # Through JSON and back, as audit_event_record does, so the hashed detail is
            # what PostgreSQL's jsonb hands back to the verifier.
            detail = json.loads(json.dumps(event.detail or {}, default=str))
            seq += 1
            fields = hashed_fields(
                occurred_at=occurred_at, stripe=stripe, seq=seq, action=str(event.action),
                outcome=str(event.outcome), actor_type=str(actor.type), actor_id=actor.id,
                actor_name=actor.name[:150], actor_role=actor.role,
                actor_role_code=actor.role_code, actor_org_ods=actor.org_ods,
                patient_id=subject.patient_id, nhs_number=subject.nhs_number,
                patient_gp_ods=subject.gp_ods, source_ods=sorted(set(event.source_ods)),
                purpose=event.purpose, detail=detail, request_id=context.request_id[:64],
                client_address=context.client_address,
            )  # fmt: skip
            digest = chain_link(head_hash, fields)
            rows.append([
                occurred_at, stripe, seq, head_hash, digest, fields["action"], fields["outcome"],
                fields["actor_type"], actor.id, fields["actor_name"], fields["actor_role"],
                fields["actor_role_code"], fields["actor_org_ods"], subject.patient_id,
                fields["nhs_number"], fields["patient_gp_ods"], fields["source_ods"],
                fields["purpose"], json.dumps(detail), fields["request_id"],
                fields["client_address"],
            ])  # fmt: skip
            head_hash = digest
        cursor.execute(
            _INSERT_EVENTS.format(values=", ".join([_ROW_MARKS] * len(rows))),
            [value for row in rows for value in row] + [seq, head_hash, stripe],
        )
        return [int(event_id) for (event_id,) in cursor.fetchall()]


# One event's placeholders in _INSERT_EVENTS (only placeholders go into the text, a row
# of them per event): its 21 columns, the detail as jsonb.
_ROW_MARKS = "(" + ", ".join(["%s"] * 18 + ["%s::jsonb", "%s", "%s"]) + ")"

_INSERT_EVENTS = """
WITH inserted AS (
    INSERT INTO audit_event (
        occurred_at, stripe, seq, prev_hash, hash, action, outcome, actor_type, actor_id,
        actor_name, actor_role, actor_role_code, actor_org_ods, patient_id, nhs_number,
        patient_gp_ods, source_ods, purpose, detail, request_id, client_address
    ) VALUES {values}
    RETURNING id, seq
), head AS (
    UPDATE audit_chain_head SET seq = %s, hash = %s WHERE stripe = %s
)
SELECT id FROM inserted ORDER BY seq
"""
