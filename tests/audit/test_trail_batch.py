"""Writing several audit events in one statement keeps the same rows and an intact chain."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, transaction

from audit.integrity import audit_chain_verify
from audit.models import AuditAction, AuditEvent, AuditOutcome
from audit.trail import (
    AuditActor,
    AuditContext,
    AuditSubject,
    PendingEvent,
    audit_event_record,
    audit_events_record,
)

pytestmark = pytest.mark.django_db

ACTOR = AuditActor.system("tests", org_ods="ZSR01")


def _event(n: int) -> PendingEvent:
    return PendingEvent(
        action=AuditAction.MATCH_DECISION,
        actor=ACTOR,
        outcome=AuditOutcome.SUCCESS if n % 2 else AuditOutcome.REJECTED,
        subject=AuditSubject(patient_id=uuid.uuid4(), nhs_number="9434765919", gp_ods="Z81001"),
        detail={"message": str(uuid.uuid4()), "entries": n},
        source_ods=("ZAC01", "Z81001", "ZAC01"),
        context=AuditContext(request_id=f"req-{n}"),
    )


def test_it_records_every_event_in_order_with_every_field() -> None:
    events = [_event(n) for n in range(3)]
    ids = audit_events_record(events=events)
    stored = [AuditEvent.objects.get(id=i) for i in ids]
    assert [e.detail["entries"] for e in stored] == [0, 1, 2]
    assert [e.outcome for e in stored] == ["rejected", "success", "rejected"]
    assert all(e.source_ods == ["Z81001", "ZAC01"] for e in stored)
    assert [e.patient_id for e in stored] == [e.subject.patient_id for e in events if e.subject]
    assert {e.stripe for e in stored} == {stored[0].stripe}
    assert [e.seq for e in stored] == [stored[0].seq + n for n in range(3)]
    assert [e.prev_hash for e in stored[1:]] == [e.hash for e in stored[:-1]]
    assert audit_chain_verify().intact


def test_single_and_batched_writes_share_one_chain() -> None:
    first = audit_event_record(action=AuditAction.FEED_RECEIVED, actor=ACTOR)
    batch = audit_events_record(events=[_event(1), _event(2)])
    last = audit_event_record(action=AuditAction.FEED_PROCESSED, actor=ACTOR)
    events = [AuditEvent.objects.get(id=i) for i in (first, *batch, last)]
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert audit_chain_verify().intact


def test_the_batch_rolls_back_with_the_callers_work() -> None:
    before = AuditEvent.objects.count()

    def processing_that_fails() -> None:
        with transaction.atomic():
            audit_events_record(events=[_event(1), _event(2)])
            raise RuntimeError("the work failed after auditing")

    with pytest.raises(RuntimeError):
        processing_that_fails()
    assert AuditEvent.objects.count() == before
    audit_events_record(events=[_event(3)])
    assert audit_chain_verify().intact


def test_no_events_write_nothing() -> None:
    before = AuditEvent.objects.count()
    assert audit_events_record(events=[]) == []
    assert AuditEvent.objects.count() == before


def test_each_batched_event_is_indexed_for_each_organisation_with_a_stake() -> None:
    ids = audit_events_record(events=[_event(1), _event(2)])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT event_id, count(*) FROM audit_event_holder WHERE event_id = ANY(%s) "
            "GROUP BY event_id",
            [ids],
        )
        counts = dict(cursor.fetchall())
    assert counts == {i: 2 for i in ids}  # the GP practice and the other source
