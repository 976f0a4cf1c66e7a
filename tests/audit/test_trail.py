"""The audit trail is append-only in PostgreSQL itself, and tampering is detected."""

from __future__ import annotations

import threading
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction

from audit.integrity import audit_chain_verify
from audit.models import AuditAction, AuditEvent, AuditOutcome
from audit.trail import AuditActor, AuditContext, AuditSubject, audit_event_record

ACTOR = AuditActor.system("tests", org_ods="ZSR01")


def _record(**overrides: object) -> int:
    kwargs: dict[str, object] = {
        "action": AuditAction.RECORD_VIEW,
        "actor": ACTOR,
        "subject": AuditSubject(patient_id=uuid.uuid4(), nhs_number="9434765919", gp_ods="Z81001"),
        "purpose": "direct-care",
        "detail": {"sections": ["allergies"], "entries": [str(uuid.uuid4())]},
        "source_ods": ["ZAC01", "Z81001"],
        "context": AuditContext(request_id="req-1", client_address="10.0.0.7"),
    }
    kwargs.update(overrides)
    return audit_event_record(**kwargs)  # type: ignore[arg-type]


def _superuser_sql(sql: str, params: list[int] | None = None) -> None:
    """Do what a superuser could: switch off the guard, change the table, switch it on."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        cursor.execute(sql, params or [])
        cursor.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")


@pytest.mark.django_db
def test_it_records_every_field_and_chains_the_event() -> None:
    event_id = _record()
    event = AuditEvent.objects.get(id=event_id)
    assert event.action == AuditAction.RECORD_VIEW
    assert event.outcome == AuditOutcome.SUCCESS
    assert (event.actor_type, event.actor_name, event.actor_org_ods) == ("system", "tests", "ZSR01")
    assert (event.nhs_number, event.patient_gp_ods) == ("9434765919", "Z81001")
    assert event.source_ods == ["Z81001", "ZAC01"]
    assert event.detail["sections"] == ["allergies"]
    assert (event.request_id, event.client_address) == ("req-1", "10.0.0.7")
    assert len(event.hash) == 64
    assert event.hash != event.prev_hash
    assert audit_chain_verify().intact


@pytest.mark.django_db
def test_two_events_on_one_connection_link_to_each_other() -> None:
    first = AuditEvent.objects.get(id=_record())
    second = AuditEvent.objects.get(id=_record())
    assert second.stripe == first.stripe
    assert second.seq == first.seq + 1
    assert second.prev_hash == first.hash


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_event SET actor_name = 'someone else' WHERE id = %s",
        "DELETE FROM audit_event WHERE id = %s",
        "UPDATE audit_event_holder SET holder_ods = 'Z00000' WHERE event_id = %s",
        "DELETE FROM audit_event_holder WHERE event_id = %s",
    ],
)
def test_postgresql_refuses_to_change_or_delete_a_row(statement: str) -> None:
    event_id = _record()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        connection.cursor().execute(statement, [event_id])


@pytest.mark.django_db
@pytest.mark.parametrize(
    "table",
    [
        "audit_event",
        "audit_event_default",
        "audit_event current partition",
        "audit_event_holder",
        "audit_event_holder_default",
        "audit_event_holder current partition",
    ],
)
def test_postgresql_refuses_to_truncate_the_trail_or_any_partition(table: str) -> None:
    event_id = _record()
    if table.endswith("current partition"):
        parent = table.split()[0]
        id_column = "id" if parent == "audit_event" else "event_id"
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT tableoid::regclass::text FROM {parent} WHERE {id_column} = %s", [event_id]
            )
            (table,) = cursor.fetchone()
        assert table.startswith(f"{parent}_20")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        connection.cursor().execute(f"TRUNCATE {table}")


@pytest.mark.django_db
def test_verify_finds_a_row_edited_behind_the_applications_back() -> None:
    _record()
    target = _record()
    _record()
    _superuser_sql("UPDATE audit_event SET purpose = 'curiosity' WHERE id = %s", [target])
    report = audit_chain_verify()
    assert [(b.event_id, b.problem) for b in report.breaks] == [
        (target, "row content does not match its hash")
    ]


@pytest.mark.django_db
def test_verify_finds_a_deleted_row() -> None:
    _record()
    target = AuditEvent.objects.get(id=_record())
    _record()
    _superuser_sql("DELETE FROM audit_event WHERE id = %s", [target.id])
    (broken,) = audit_chain_verify().breaks
    assert broken.stripe == target.stripe
    assert broken.seq == target.seq
    assert "a row was deleted" in broken.problem


@pytest.mark.django_db
def test_verify_finds_an_inserted_row() -> None:
    first = AuditEvent.objects.get(id=_record())
    _record()
    with connection.cursor() as cursor:
        # A forged row slotted in after `first`, claiming the next sequence number.
        cursor.execute(
            """
            INSERT INTO audit_event (occurred_at, stripe, seq, prev_hash, hash, action, outcome,
                                     actor_type, actor_name)
            VALUES (now(), %s, %s, %s, %s, 'record-view', 'success', 'user', 'forger')
            """,
            [first.stripe, first.seq + 1, first.hash, "f" * 64],
        )
    breaks = audit_chain_verify().breaks
    assert len(breaks) == 1
    assert breaks[0].stripe == first.stripe
    assert breaks[0].problem in {
        "sequence repeated: a row was inserted",
        "row content does not match its hash",
    }


@pytest.mark.django_db
def test_verify_finds_rows_deleted_from_the_end_of_a_chain() -> None:
    _record()
    last = AuditEvent.objects.get(id=_record())
    _superuser_sql("DELETE FROM audit_event WHERE id = %s", [last.id])
    (broken,) = audit_chain_verify().breaks
    assert broken.stripe == last.stripe
    assert "last rows were deleted" in broken.problem


@pytest.mark.django_db
def test_audit_verify_command_reports_intact_and_broken_chains() -> None:
    _record()
    out = StringIO()
    call_command("audit_verify", stdout=out)
    assert "Audit trail intact" in out.getvalue()

    target = _record()
    _superuser_sql("UPDATE audit_event SET actor_name = 'x' WHERE id = %s", [target])
    err = StringIO()
    with pytest.raises(CommandError, match="tampered with: 1 broken chain"):
        call_command("audit_verify", stdout=StringIO(), stderr=err)
    assert f"event {target}" in err.getvalue()


@pytest.mark.django_db
def test_an_audit_write_rolls_back_with_the_callers_work() -> None:
    before = AuditEvent.objects.count()

    def audited_read_that_fails() -> None:
        with transaction.atomic():
            _record()
            raise RuntimeError("the read failed after auditing")

    with pytest.raises(RuntimeError):
        audited_read_that_fails()
    assert AuditEvent.objects.count() == before
    assert audit_chain_verify().intact


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_on_many_connections_keep_every_chain_intact() -> None:
    marker = str(uuid.uuid4())
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for _ in range(n):
                _record(purpose="concurrency", context=AuditContext(request_id=marker))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(25,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert AuditEvent.objects.filter(request_id=marker).count() == 200
    assert audit_chain_verify().intact


@pytest.mark.django_db
def test_each_event_is_indexed_once_for_each_organisation_with_a_stake_in_it() -> None:
    registered_and_contributed = _record()  # GP Z81001; data from ZAC01 and Z81001
    no_person = _record(subject=None, source_ods=[])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT h.event_id, h.holder_ods, h.occurred_at = e.occurred_at "
            "FROM audit_event_holder h JOIN audit_event e ON e.id = h.event_id "
            "WHERE h.event_id = ANY(%s) ORDER BY h.holder_ods",
            [[registered_and_contributed, no_person]],
        )
        rows = cursor.fetchall()
    assert rows == [
        (registered_and_contributed, "Z81001", True),
        (registered_and_contributed, "ZAC01", True),
    ]


@pytest.mark.django_db
def test_partitions_are_made_ahead_and_guarded() -> None:
    from audit.trail import audit_partitions_ensure

    audit_partitions_ensure(months_ahead=5)
    assert audit_partitions_ensure(months_ahead=5) == 0  # idempotent
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent IN ('audit_event'::regclass, 'audit_event_holder'::regclass)
              AND c.relname ~ '^audit_event(_holder)?_[0-9]{4}_[0-9]{2}$'
              AND NOT EXISTS (
                  SELECT 1 FROM pg_trigger t
                  WHERE t.tgrelid = c.oid AND t.tgname ~ '^audit_event(_holder)?_no_truncate$')
            """
        )
        (unguarded,) = cursor.fetchone()
        cursor.execute(
            "SELECT to_regclass(format('audit_event_%s', m)) IS NOT NULL, "
            "to_regclass(format('audit_event_holder_%s', m)) IS NOT NULL "
            "FROM to_char(now() + interval '5 months', 'YYYY_MM') AS m"
        )
        made_ahead = cursor.fetchone()
    assert unguarded == 0
    assert made_ahead == (True, True)


@pytest.mark.django_db
def test_a_long_list_of_entries_is_stored_whole_uncompressed_in_every_partition() -> None:
    from audit.trail import audit_partitions_ensure

    audit_partitions_ensure(months_ahead=6)  # partitions made after the migration too
    entries = [str(uuid.uuid4()) for _ in range(2000)]
    event_id = _record(detail={"entries": entries})
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FILTER (WHERE a.attstorage <> 'e'), count(*)
            FROM pg_attribute a
            WHERE a.attname = 'detail' AND a.attrelid IN (
                SELECT 'audit_event'::regclass
                UNION ALL SELECT inhrelid FROM pg_inherits
                WHERE inhparent = 'audit_event'::regclass)
            """
        )
        compressing, partitions = cursor.fetchone()
    assert (compressing, partitions > 6) == (0, True)
    assert AuditEvent.objects.get(id=event_id).detail["entries"] == entries
    assert audit_chain_verify().intact
