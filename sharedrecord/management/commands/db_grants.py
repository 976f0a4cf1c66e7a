"""Grant the application's database role what it needs, and no more, on the audit trail.

Run by the deployment as the owner after every migrate (deploy/compose.yaml):
the role may read and write the record's tables, but may only INSERT and
SELECT on the audit trail (its table, its record holders' index and every
partition of both), on access reviews and on the trail's checkpoints, on top
of the triggers that refuse UPDATE, DELETE and TRUNCATE on all of them.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from psycopg import sql

AUDIT_TABLES = ("audit_event", "audit_event_holder")  # the trail and its record holders' index
REVIEW_TABLE = "audit_accessreview"  # governance findings: written once, never changed
CHECKPOINT_TABLE = "audit_checkpoint"  # signed chain heads: written once, never changed


def _audit_tables(cursor: Any) -> list[str]:
    cursor.execute(
        """
        SELECT unnest(%s::text[]) UNION ALL
        SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = ANY(%s::regclass[])
        """,
        [[*AUDIT_TABLES, REVIEW_TABLE, CHECKPOINT_TABLE], list(AUDIT_TABLES)],
    )
    return [row[0] for row in cursor.fetchall()]


class Command(BaseCommand):
    help = "Grant the application role its privileges; the audit trail is INSERT/SELECT only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", required=True, help="the role web and workers log in as")

    def handle(self, *args: Any, **options: Any) -> None:
        role = sql.Identifier(options["role"])
        with transaction.atomic(), connection.cursor() as cursor:
            for statement in (
                "GRANT USAGE ON SCHEMA public TO {role}",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
                "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
                "REVOKE ALL ON FUNCTION audit_partitions_ensure(date, int) FROM PUBLIC",
                "GRANT EXECUTE ON FUNCTION audit_partitions_ensure(date, int) TO {role}",
            ):
                cursor.execute(sql.SQL(statement).format(role=role))
            tables = _audit_tables(cursor)
            for table in tables:
                cursor.execute(
                    sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {role}").format(
                        table=sql.Identifier(table), role=role
                    )
                )
        self.stdout.write(
            f"Granted {options['role']}; the audit trail ({len(tables)} tables) is "
            "INSERT and SELECT only."
        )
