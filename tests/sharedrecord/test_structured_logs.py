"""Logs are JSON lines carrying the request id the audit trail records, and no personal data."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.test import Client

from audit.models import AuditAction, AuditEvent
from ingestion.models import FeedMessage
from ingestion.tasks import feed_message_process_task
from sharedrecord.logs import MASK, json_formatter
from sharedrecord.models import Patient, User
from tests.factories import (
    confirm_basis,
    feed,
    make_credential,
    make_organisation,
    make_patient,
    next_nhs_number,
    partner,
    signed_in,
    small_bundle,
)

pytestmark = pytest.mark.django_db

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    """What the configured JSON formatter writes while the test runs, parsed line by line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line]

    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_a_record_view_logs_the_request_id_its_audit_event_records(
    client: Client, registered_gp: User, record: Patient, log_lines: Lines
) -> None:
    signed_in(client, registered_gp)
    confirm_basis(client, record)
    response = client.get(f"/record/{record.public_id}/")
    assert response.status_code == 200
    event = AuditEvent.objects.filter(action=AuditAction.RECORD_VIEW).latest("id")
    assert event.request_id == response["X-Request-ID"]
    (line,) = [
        line for line in log_lines() if line["event"] == "request" and line["route"] == "record"
    ]
    assert line["request_id"] == event.request_id
    assert (line["method"], line["status"], line["level"]) == ("GET", 200, "info")
    assert line["user"] == str(registered_gp.public_id)
    assert {"timestamp", "logger", "duration_ms"} <= set(line)
    # Nothing about the person: not their NHS number, name or date of birth, nor the path.
    text = json.dumps(log_lines())
    for personal in (record.nhs_number, record.family_name, str(record.birth_date)):
        assert personal
        assert personal not in text
    assert str(record.public_id) not in line.values()


def test_a_callers_request_id_is_kept(client: Client, log_lines: Lines) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID="trace-abc.123")
    assert response["X-Request-ID"] == "trace-abc.123"
    assert [line["request_id"] for line in log_lines() if line["event"] == "request"] == [
        "trace-abc.123"
    ]


def test_anything_shaped_like_an_nhs_number_is_masked(log_lines: Lines) -> None:
    number = next_nhs_number()
    spaced = f"{number[:3]} {number[3:6]} {number[6:]}"
    logging.getLogger("ingestion.test").warning("matched %s and %s", number, spaced)
    (line,) = log_lines()
    assert number not in line["event"]
    assert line["event"] == f"matched {MASK} and {MASK}"


def test_a_number_next_to_a_word_or_ending_a_sentence_is_masked(log_lines: Lines) -> None:
    number = next_nhs_number()
    spaced = f"{number[:3]} {number[3:6]} {number[6:]}"
    logging.getLogger("ingestion.test").warning("NHS%s, %sx and %s.", number, number, spaced)
    (line,) = log_lines()
    assert line["event"] == f"NHS{MASK}, {MASK}x and {MASK}."


def test_a_database_errors_row_values_are_masked(log_lines: Lines) -> None:
    # PostgreSQL's error names the failing row's values; psycopg puts them in its text.
    row: dict[str, Any] = {"family_name": "Zebedee", "postcode": "ZZ99 3QX", "gender": None}
    try:
        with transaction.atomic():  # gender may not be null: the insert fails
            make_patient(**row)
    except IntegrityError:
        logging.getLogger("django.request").exception("Internal Server Error: /optouts/")
    (line,) = log_lines()
    assert "Failing row contains [values removed]" in line["exception"]  # still says what
    assert "Zebedee" not in json.dumps(line)
    assert "ZZ99" not in json.dumps(line)


def test_a_database_errors_key_value_is_masked(log_lines: Lines) -> None:
    code = "ZKEY1"  # a name, not a literal, in the traceback's source lines
    make_organisation(ods_code=code)
    try:
        with transaction.atomic():  # the key is taken: PostgreSQL quotes its value
            make_organisation(ods_code=code)
    except IntegrityError:
        logging.getLogger("django.request").exception("Internal Server Error: /admin/")
    (line,) = log_lines()
    assert "Key (ods_code)=[values removed]" in line["exception"]
    assert "ZKEY1" not in json.dumps(line)


def test_a_deadlocks_person_lock_ids_are_masked(log_lines: Lines) -> None:
    # PostgreSQL's words (ids unsigned): the lock's id is a hash of the NHS number.
    detail = (
        "deadlock detected\nDETAIL:  Process 17340 waits for ExclusiveLock on advisory lock "
        "[19036,7401,123456789,2]; blocked by process 17376.\nProcess 17376 waits for "
        "ExclusiveLock on advisory lock [19036,7401,987654321,2]; blocked by process 17340."
    )
    logging.getLogger("django.request").error("Service Unavailable: %s", detail)
    (line,) = log_lines()
    assert "123456789" not in line["event"]
    assert "987654321" not in line["event"]
    assert line["event"].count("advisory lock [values removed]") == 2


def test_ids_that_begin_with_ten_digits_are_not_masked(log_lines: Lines) -> None:
    # A request id is 32 hex characters: about one in 600 begins with ten digits.
    request_id = "1368777391db45c5a7eee09d4b27686a"
    public_id = "13687773-9123-4c5a-8eee-0123456789ab"
    logging.getLogger("ingestion.test").warning("ids %s %s", request_id, public_id)
    (line,) = log_lines()
    assert line["event"] == f"ids {request_id} {public_id}"


def test_a_tasks_lines_carry_its_id_and_name(log_lines: Lines) -> None:
    credential, _ = make_credential(partner("ZAC01"))
    message = feed(credential, small_bundle(next_nhs_number(), key="log"), process=False)
    result = feed_message_process_task.apply((message.pk,))
    assert FeedMessage.objects.get(pk=message.pk).status == "done"
    done = [line for line in log_lines() if str(message.public_id) in line["event"]]
    assert done
    assert all(line["task_id"] == result.id for line in done)
    assert all(line["task"] == "ingestion.feed_message_process" for line in done)
    # Bound values end with the task: a later line carries none.
    logging.getLogger("x").info("after")
    assert "task_id" not in log_lines()[-1]
