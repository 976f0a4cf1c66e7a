"""GET /metrics: Prometheus text, behind a bearer token, with no personal data in any label."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings as SettingsWrapper

from audit.metrics import VERIFY_OUTCOME_KEY, audit_verify_outcome_note
from ingestion.models import MatchQueueItem, MessageKind
from ingestion.tasks import audit_partitions_ensure_task
from sharedrecord.celery import platform_queues, task_queue_for
from sharedrecord.metrics import _pending_counters, notifications_pending_register
from tests.factories import feed, feed_kind, make_credential, next_nhs_number, partner, small_bundle

pytestmark = pytest.mark.django_db

TOKEN = "metrics-test-token"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
Scrape = Callable[[], Samples]


@pytest.fixture
def scrape(settings: SettingsWrapper, client: Client) -> Scrape:
    settings.METRICS_TOKEN = TOKEN

    def get() -> Samples:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain")
        text = response.content.decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    return get


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_bearer_token(settings: SettingsWrapper, client: Client) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.DEBUG = False
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_with_no_token_set_metrics_are_refused_outside_debug(
    settings: SettingsWrapper, client: Client
) -> None:
    settings.METRICS_TOKEN = ""
    settings.DEBUG = False
    assert client.get("/metrics").status_code == 401
    settings.DEBUG = True
    assert client.get("/metrics").status_code == 200


def test_messages_are_counted_by_organisation_kind_and_outcome(
    scrape: Scrape, django_capture_on_commit_callbacks: Any
) -> None:
    acute, _ = make_credential(partner("ZAC01"))
    before = scrape()
    feed(acute, small_bundle(next_nhs_number(), key="m1"))
    feed(acute, small_bundle(None, key="m2"))  # no NHS number: parked
    feed_kind(acute, MessageKind.FHIR_JSON, b'{"resourceType": "Patient"}')  # not a Bundle
    after = scrape()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    fhir = {"organisation": "ZAC01", "kind": "fhir-json"}
    assert grew("sharedrecord_feed_messages_received_total", **fhir) == 3
    assert grew("sharedrecord_feed_messages_finished_total", **fhir, outcome="done") == 2
    assert grew("sharedrecord_feed_messages_finished_total", **fhir, outcome="rejected") == 1
    assert grew("sharedrecord_feed_entries_parked_total", **fhir) == 2
    assert value(after, "sharedrecord_feed_messages_pending", **fhir) == 0
    # The audit trail's writes were timed.
    assert value(after, "sharedrecord_audit_write_seconds_count", kind="batch") > 0


def test_parked_items_are_counted_by_age(scrape: Scrape) -> None:
    acute, _ = make_credential(partner("ZAC01"))
    feed(acute, small_bundle(None, key="old"))
    items = MatchQueueItem.objects.filter(resolved_at__isnull=True)
    reason = items.first().reason  # type: ignore[union-attr]
    fresh = value(scrape(), "sharedrecord_parked_items", age="lt-1h", reason=reason)
    assert fresh == items.count()
    items.update(created_at=timezone.now() - datetime.timedelta(days=2))  # time travel
    samples = scrape()
    assert value(samples, "sharedrecord_parked_items", age="lt-1h", reason=reason) == 0
    assert value(samples, "sharedrecord_parked_items", age="1d-7d", reason=reason) == fresh
    assert value(samples, "sharedrecord_parked_oldest_age_seconds") > 86400


def test_the_accept_to_queryable_latency_is_observed_on_commit(
    scrape: Scrape, django_capture_on_commit_callbacks: Any
) -> None:
    acute, _ = make_credential(partner("ZAC01"))
    name = "sharedrecord_feed_accept_to_queryable_seconds_count"
    labels = {"organisation": "ZAC01", "kind": "fhir-json"}
    before = value(scrape(), name, **labels)
    with django_capture_on_commit_callbacks(execute=True):
        feed(acute, small_bundle(next_nhs_number(), key="lat"))
    assert value(scrape(), name, **labels) == before + 1


def test_notifications_pending_is_zero_until_a_counter_is_registered(scrape: Scrape) -> None:
    assert value(scrape(), "sharedrecord_notifications_pending", channel="all") == 0

    def pending() -> dict[str, int]:
        return {"rest-hook": 3, "in-app": 2}

    notifications_pending_register(pending)
    try:
        samples = scrape()
        assert value(samples, "sharedrecord_notifications_pending", channel="rest-hook") == 3
        assert value(samples, "sharedrecord_notifications_pending", channel="in-app") == 2
    finally:
        _pending_counters.remove(pending)


def test_the_last_audit_chain_check_is_exported(scrape: Scrape) -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    saved = client.get(VERIFY_OUTCOME_KEY)
    try:
        audit_verify_outcome_note(intact=False, events_checked=12)
        samples = scrape()
        assert value(samples, "sharedrecord_audit_chain_intact") == 0
        assert value(samples, "sharedrecord_audit_chain_events_checked") == 12
        audit_verify_outcome_note(intact=True, events_checked=13)
        assert value(scrape(), "sharedrecord_audit_chain_intact") == 1
    finally:
        client.delete(VERIFY_OUTCOME_KEY)
        if saved is not None:
            client.set(VERIFY_OUTCOME_KEY, saved)


def test_tasks_go_to_the_queue_of_their_kind() -> None:
    queues = platform_queues()
    assert task_queue_for("ingestion.feed_message_process") == queues["feeds"]
    assert task_queue_for("ingestion.feed_messages_sweep") == queues["maintenance"]
    assert task_queue_for("maintenance.audit_partitions_ensure") == queues["maintenance"]
    assert task_queue_for("notifications.deliver") == queues["notifications"]
    assert len(set(queues.values())) == 4


def test_a_queues_depth_and_age_are_exported(scrape: Scrape) -> None:
    queue = platform_queues()["maintenance"]
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(queue)
    try:
        audit_partitions_ensure_task.delay()  # routed to maintenance; no worker here takes it
        samples = scrape()
        labels = {"kind": "maintenance", "queue": queue}
        assert value(samples, "sharedrecord_queue_depth", **labels) == 1
        assert ("sharedrecord_queue_oldest_age_seconds", tuple(sorted(labels.items()))) in samples
    finally:
        broker.delete(queue)


def test_no_label_carries_personal_data(scrape: Scrape) -> None:
    acute, _ = make_credential(partner("ZAC01"))
    number = next_nhs_number()
    feed(acute, small_bundle(number, key="pd"))
    feed(acute, small_bundle(None, key="pd2"))
    samples = scrape()
    allowed_keys = {
        "organisation", "kind", "outcome", "age", "reason", "channel", "queue", "task", "state",
        "le", "method", "view", "status", "code", "vendor", "alias", "type", "transport",
        "templatename", "backend", "model", "version", "implementation", "major", "minor",
        "patchlevel", "generation", "quantile", "cmd", "name", "charset", "streaming",
    }  # fmt: skip
    for _, labels in samples:
        for key, label in labels:
            assert key in allowed_keys, key
            assert number not in label
