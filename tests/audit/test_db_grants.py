"""The application role may only append to and read the audit trail."""

from __future__ import annotations

import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db  # the role and its grants roll back with the test


def _may(role: str, table: str, privilege: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT has_table_privilege(%s, %s, %s)", [role, table, privilege])
        return bool(cursor.fetchone()[0])


def test_the_app_role_appends_and_reads_the_trail_and_nothing_more() -> None:
    from audit.trail import audit_partitions_ensure

    audit_partitions_ensure(months_ahead=2)
    role = f"app_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}"')
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent IN ('audit_event'::regclass, 'audit_event_holder'::regclass)"
        )
        partitions = [row[0] for row in cursor.fetchall()]
    assert len(partitions) >= 4
    call_command("db_grants", role=role, stdout=StringIO())

    append_only = ["audit_event", "audit_event_holder", "audit_accessreview", "audit_checkpoint"]
    for table in [*append_only, *partitions]:
        assert not _may(role, table, "UPDATE"), table
        assert not _may(role, table, "DELETE"), table
        assert not _may(role, table, "TRUNCATE"), table
    assert _may(role, "audit_event", "INSERT")
    assert _may(role, "audit_event", "SELECT")
    assert _may(role, "audit_event_holder", "INSERT")  # the trail's insert trigger writes it
    assert _may(role, "audit_accessreview", "INSERT")
    assert _may(role, "audit_checkpoint", "INSERT")  # audit_verify checkpoints as it goes
    assert _may(role, "audit_checkpoint", "SELECT")
    for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
        assert _may(role, "sharedrecord_entry", privilege)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT has_function_privilege(%s, 'audit_partitions_ensure(date, int)', 'EXECUTE'),"
            " has_function_privilege('public', 'audit_partitions_ensure(date, int)', 'EXECUTE'),"
            " prosecdef FROM pg_proc WHERE proname = 'audit_partitions_ensure'",
            [role],
        )
        assert cursor.fetchone() == (True, False, True)


@pytest.mark.parametrize("table", ["audit_accessreview", "audit_checkpoint"])
def test_postgresql_guards_findings_and_checkpoints_like_the_trail(table: str) -> None:
    """Even the owner is refused: each table has a row guard and a TRUNCATE guard."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.tgname FROM pg_trigger t WHERE t.tgrelid = %s::regclass "
            "AND NOT t.tgisinternal AND t.tgenabled = 'O' ORDER BY t.tgname",
            [table],
        )
        triggers = [row[0] for row in cursor.fetchall()]
    assert triggers == [f"{table}_append_only", f"{table}_no_truncate"]
