"""A real worker serves its metrics: task rates and failures summed over its pool processes."""

from __future__ import annotations

import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from ingestion.models import FeedMessage
from ingestion.tasks import feed_message_process_task
from tests.factories import feed, make_credential, next_nhs_number, partner, small_bundle
from tests.services import CeleryWorker, database_url, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_worker_exports_task_rates_failures_latency_and_queues(tmp_path: Path) -> None:
    port = free_port()
    queue = f"metrics-{uuid.uuid4().hex[:10]}"
    worker = CeleryWorker(
        database=database_url(settings.DATABASES["default"]),
        queue=queue,
        env={"WORKER_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    )
    worker.start()
    try:
        worker.wait_ready()
        credential, _ = make_credential(partner("ZAC01"))
        message = feed(credential, small_bundle(next_nhs_number(), key="wm"), process=False)
        feed_message_process_task.apply_async((message.pk,), queue=queue)
        feed_message_process_task.apply_async(("not-a-message-id",), queue=queue)  # fails
        deadline = time.monotonic() + 60
        while FeedMessage.objects.get(pk=message.pk).status != "done":
            assert time.monotonic() < deadline, "the worker did not process the message"
            time.sleep(0.2)

        def task(state: str) -> float:
            labels = (("state", state), ("task", "ingestion.feed_message_process"))
            return samples.get(("sharedrecord_celery_tasks_total", labels), 0.0)

        deadline = time.monotonic() + 30
        while True:  # a task is counted just after it ends (the message commits before)
            samples = scrape(port)
            if (task("failed") and task("succeeded")) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert task("succeeded") == 1
        assert task("failed") == 1
        # Which worker stores the message is not this test's to decide: in the whole slow
        # suite a worker of another module may take it first (this one then answers
        # not-claimed). The latency and audit write histograms are proven where the
        # message is processed in-process (tests/sharedrecord/test_metrics.py).
        feeds = (("kind", "feeds"), ("queue", queue))
        assert samples[("sharedrecord_queue_depth", feeds)] == 0
        # The worker's endpoint leaves the database's counts to the web's /metrics.
        assert not any(name.startswith("sharedrecord_feed_messages") for name, _ in samples)
    finally:
        worker.stop()
