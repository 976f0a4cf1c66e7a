"""A receipt always tells the truth about a message the worker cannot finish.

The poisoned messages here are stored directly, as one stored before the edge refused such
input would be: the worker is the last line, and what it says must be true and hold no data.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from audit.models import AuditAction, AuditEvent
from ingestion.models import FeedCredential, FeedMessage, MessageKind, MessageStatus
from ingestion.processing import feed_message_process
from ingestion.purge import personal_data_purge
from sharedrecord.celery import app as celery_app
from sharedrecord.models import StaffRole, User
from tests.factories import (
    deeply_nested_json,
    deeply_nested_xml,
    make_credential,
    make_organisation,
    next_nhs_number,
    small_bundle,
)
from tests.services import CeleryWorker, database_url

MARKER = "Poisonous"


def _poisoned_bundle(number: str) -> dict[str, Any]:
    bundle = small_bundle(number)
    bundle["entry"][0]["resource"]["name"][0]["family"] = f"{MARKER}\u0000Name"
    return bundle


def _store(credential: FeedCredential, payload: bytes, *, kind: str = MessageKind.FHIR_JSON,
           attempts: int = 0) -> FeedMessage:  # fmt: skip
    return FeedMessage.objects.create(
        organisation=credential.organisation,
        credential=credential,
        kind=kind,
        idempotency_key=f"poison-{uuid.uuid4().hex}",
        payload=payload,
        payload_sha256="0" * 64,
        payload_bytes=len(payload),
        entry_count=2,
        attempts=attempts,
    )


def _receipt(client: Client, token: str, message: FeedMessage) -> dict[str, Any]:
    response = client.get(
        f"/api/v1/feeds/receipts/{message.public_id}", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200
    return dict(response.json())


def _issue_codes(receipt: dict[str, Any]) -> list[str]:
    return [i["details"]["coding"][0]["code"] for i in receipt["outcome"]["issue"]]


@pytest.fixture
def feed(db: None) -> tuple[FeedCredential, str]:
    return make_credential(make_organisation(ods_code="ZRT01", kind="acute"))


@pytest.mark.django_db
def test_each_failed_attempt_says_attempt_n_of_m_and_its_stage_then_failed_names_the_entry(
    client: Client, feed, settings: SettingsWrapper
) -> None:
    credential, token = feed
    settings.FEED_MAX_ATTEMPTS = 2
    message = _store(credential, json.dumps(_poisoned_bundle(next_nhs_number())).encode())

    assert _receipt(client, token, message)["status"] == "queued"
    assert feed_message_process(message_id=message.pk) == "retrying"
    receipt = _receipt(client, token, message)
    assert receipt["status"] == "retrying"
    assert (receipt["attempt"], receipt["maxAttempts"], receipt["stage"]) == (1, 2, "upsert")
    (issue,) = receipt["outcome"]["issue"]
    assert issue["details"]["coding"][0]["code"] == "attempt-failed"
    assert "attempt 1 of 2" in issue["details"]["text"].lower()
    assert issue["expression"] == ["Bundle.entry[0].resource.name[0].family"]

    assert feed_message_process(message_id=message.pk) == MessageStatus.FAILED
    receipt = _receipt(client, token, message)
    assert receipt["status"] == "failed"
    assert (receipt["attempt"], receipt["stage"]) == (2, "upsert")
    assert _issue_codes(receipt) == ["processing-failed"]
    (issue,) = receipt["outcome"]["issue"]
    assert issue["expression"] == ["Bundle.entry[0].resource.name[0].family"]
    assert "entry 0" in issue["details"]["text"]
    assert MARKER not in json.dumps(receipt)

    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert bytes(message.payload)  # kept, so an operator can replay it once fixed
    assert MARKER not in json.dumps(message.failure)
    failed = AuditEvent.objects.get(
        action=AuditAction.FEED_REJECTED, detail__message=str(message.public_id)
    )
    assert failed.outcome == "failed"
    assert failed.detail["stage"] == "upsert"
    assert MARKER not in json.dumps(failed.detail)


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [MessageKind.FHIR_JSON, MessageKind.FHIR_XML])
def test_a_failure_while_parsing_is_traced_to_the_entry_that_breaks_the_validator(
    client: Client, feed, settings: SettingsWrapper, kind: str
) -> None:
    credential, token = feed
    settings.FEED_MAX_ATTEMPTS = 1
    # Nested far deeper than the edge now allows: stored before it refused such input.
    payload = deeply_nested_json(600) if kind == MessageKind.FHIR_JSON else deeply_nested_xml(200)
    message = _store(credential, payload.encode(), kind=kind)
    assert feed_message_process(message_id=message.pk) == MessageStatus.FAILED
    receipt = _receipt(client, token, message)
    assert (receipt["status"], receipt["stage"]) == ("failed", "parse")
    (issue,) = receipt["outcome"]["issue"]
    assert issue["expression"] == ["Bundle.entry[0].resource"]
    assert "entry 0" in issue["details"]["text"]


@pytest.mark.django_db
def test_the_worker_logs_the_id_stage_and_class_never_the_exception_text(
    feed, settings: SettingsWrapper, caplog: pytest.LogCaptureFixture
) -> None:
    credential, _ = feed
    settings.FEED_MAX_ATTEMPTS = 1
    message = _store(credential, json.dumps(_poisoned_bundle(next_nhs_number())).encode())
    with caplog.at_level(logging.DEBUG):
        assert feed_message_process(message_id=message.pk) == MessageStatus.FAILED
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors
    assert all(MARKER not in r.getMessage() and not r.exc_info for r in errors)
    assert any(str(message.public_id) in r.getMessage() and "DataError" in r.getMessage()
               and "upsert" in r.getMessage() for r in errors)  # fmt: skip


@pytest.mark.django_db
def test_a_message_whose_worker_kept_dying_fails_with_the_truth(
    client: Client, feed, settings: SettingsWrapper
) -> None:
    credential, token = feed
    payload = json.dumps(small_bundle(next_nhs_number())).encode()
    message = _store(credential, payload, attempts=settings.FEED_MAX_ATTEMPTS)
    assert feed_message_process(message_id=message.pk) == MessageStatus.FAILED
    receipt = _receipt(client, token, message)
    assert receipt["status"] == "failed"
    assert receipt["stage"] == "worker-lost"
    assert _issue_codes(receipt) == ["processing-failed"]


@pytest.mark.django_db
def test_a_receipt_says_which_attempt_is_running(client: Client, feed) -> None:
    credential, token = feed
    message = _store(credential, b"{}", attempts=2)
    FeedMessage.objects.filter(pk=message.pk).update(status=MessageStatus.PROCESSING)
    receipt = _receipt(client, token, message)
    assert (receipt["status"], receipt["attempt"], receipt["maxAttempts"]) == (
        "processing", 2, django_settings.FEED_MAX_ATTEMPTS,
    )  # fmt: skip


@pytest.mark.django_db
def test_the_opt_out_purge_reaches_failed_messages_too(feed, settings: SettingsWrapper) -> None:
    credential, _ = feed
    settings.FEED_MAX_ATTEMPTS = 1
    number = next_nhs_number()
    message = _store(credential, json.dumps(_poisoned_bundle(number)).encode())
    assert feed_message_process(message_id=message.pk) == MessageStatus.FAILED
    assert personal_data_purge(number)["pending_messages_redacted"] == 1
    message.refresh_from_db()
    assert number.encode() not in bytes(message.payload)


# ---------------------------------------------------------------- operators


@pytest.fixture
def operator_client(client: Client) -> Client:
    home = make_organisation(ods_code="ZSR43", kind="other")
    user = User.objects.create_user(
        "operator.test", password="x-long-password-1", organisation=home,
        role=StaffRole.SYSTEM_ADMIN, is_staff=True, is_superuser=True,
    )  # fmt: skip
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_failed_messages_are_listed_for_operators_and_a_replay_is_audited(
    operator_client: Client, feed, settings: SettingsWrapper,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    credential, _ = feed
    settings.FEED_MAX_ATTEMPTS = 1
    message = _store(credential, json.dumps(_poisoned_bundle(next_nhs_number())).encode())
    feed_message_process(message_id=message.pk)
    listing = operator_client.get("/admin/ingestion/feedmessage/?status__exact=failed")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert str(message.public_id) in page
    assert "upsert" in page
    assert MARKER not in page

    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = operator_client.post(
            "/admin/ingestion/feedmessage/",
            {"action": "replay", "_selected_action": [message.pk]},
        )
    assert response.status_code == 302
    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.RECEIVED, 0)
    assert len(queued) == 1  # the replay is queued once it commits
    replayed = AuditEvent.objects.get(
        action=AuditAction.ADMIN_CHANGE, detail__object=str(message.public_id)
    )
    assert replayed.detail["change"] == "replayed"
    assert replayed.actor_name == "operator.test"


@pytest.mark.django_db
def test_staff_without_the_replay_permission_cannot_replay(client: Client, feed,
                                                          settings: SettingsWrapper) -> None:  # fmt: skip
    credential, _ = feed
    settings.FEED_MAX_ATTEMPTS = 1
    message = _store(credential, json.dumps(_poisoned_bundle(next_nhs_number())).encode())
    feed_message_process(message_id=message.pk)
    viewer = User.objects.create_user(
        "viewer.test", password="x-long-password-1",
        organisation=make_organisation(ods_code="ZSR44", kind="other"),
        role=StaffRole.SYSTEM_ADMIN, is_staff=True,
    )  # fmt: skip
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_feedmessage"))
    client.force_login(viewer)
    client.post(
        "/admin/ingestion/feedmessage/", {"action": "replay", "_selected_action": [message.pk]}
    )
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED
    assert not AuditEvent.objects.filter(
        action=AuditAction.ADMIN_CHANGE, detail__object=str(message.public_id)
    ).exists()


# ---------------------------------------------------------------- Celery keeps nothing


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_celery_keeps_no_exception_text_in_redis_and_the_worker_logs_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    organisation = make_organisation(ods_code="ZRT02", kind="acute")
    credential, _ = make_credential(organisation)
    queue = f"poison-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("FEED_MAX_ATTEMPTS", "1")
    worker = CeleryWorker(database=database_url(django_settings.DATABASES["default"]), queue=queue,
                          concurrency=1)  # fmt: skip
    worker.log_path.unlink(missing_ok=True)
    worker.start()
    try:
        worker.wait_ready()
        message = _store(credential, json.dumps(_poisoned_bundle(next_nhs_number())).encode())
        from ingestion.tasks import feed_message_process_task

        result = feed_message_process_task.apply_async((message.pk,), queue=queue)
        deadline = time.monotonic() + 60
        while FeedMessage.objects.get(pk=message.pk).status != MessageStatus.FAILED:
            assert time.monotonic() < deadline, FeedMessage.objects.get(pk=message.pk).status
            time.sleep(0.2)
        time.sleep(1)  # let the worker finish the task after the commit
    finally:
        worker.stop()
    client = redis.Redis.from_url(celery_app.conf.result_backend)
    stored = client.get(f"celery-task-meta-{result.id}")
    assert stored is None  # no result, and no failure with its text
    log = worker.log_path.read_text(errors="replace")
    assert MARKER not in log
    assert str(FeedMessage.objects.get(pk=message.pk).public_id) in log
