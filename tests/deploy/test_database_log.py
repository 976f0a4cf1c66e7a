"""PostgreSQL, as deploy/compose.yaml runs it, keeps personal data out of its server log.

Django (psycopg 3, client-side binding) writes each value into the SQL it
sends, and PostgreSQL logs a failed statement's text and a broken unique key's
value by default, so one duplicate NHS number, deadlock or cancelled statement
would put names and numbers into the operator's log. A real server is started
with the compose file's settings; the same error with PostgreSQL's defaults
shows the test can see a leak.
"""

from __future__ import annotations

import psycopg
import pytest
import yaml

from tests.factories import next_nhs_number
from tests.services import BASE_DIR, private_postgres


def compose_postgres_settings() -> dict[str, str]:
    compose = yaml.safe_load((BASE_DIR / "deploy" / "compose.yaml").read_text())
    command = list(compose["services"]["postgres"]["command"])
    assert command[0] == "postgres"
    pairs = [command[i + 1] for i, part in enumerate(command) if part == "-c"]
    return dict(pair.split("=", 1) for pair in pairs)


def _duplicate_person(url: str, number: str, *, defaults: bool) -> None:
    """Insert the same person twice, as Django sends it: the values in the statement text."""
    with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        if defaults:
            conn.execute("SET log_min_error_statement = error")
            conn.execute("SET log_error_verbosity = default")
        conn.execute("CREATE TABLE IF NOT EXISTS person (nhs_number text UNIQUE, family text)")
        conn.execute("INSERT INTO person VALUES (%s, %s)", [number, "Testperson"])
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO person VALUES (%s, %s)", [number, "Testperson"])


def test_a_failed_statement_leaves_no_value_in_the_server_log() -> None:
    settings = compose_postgres_settings()
    assert settings.keys() >= {"log_min_error_statement", "log_error_verbosity"}
    with private_postgres(settings=settings) as server:
        ours, control = next_nhs_number(), next_nhs_number()
        _duplicate_person(server.url(), ours, defaults=False)
        _duplicate_person(server.url(), control, defaults=True)
        log = server.log_path.read_text()
    assert log.count("duplicate key value violates unique constraint") == 2  # both logged
    assert control in log  # PostgreSQL's defaults write the value: the test sees a leak
    assert ours not in log
