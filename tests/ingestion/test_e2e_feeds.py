"""HTTP feed -> PostgreSQL -> Redis -> a real Celery worker process -> PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest

from ingestion.fhir.profile import SUPPORTED
from ingestion.models import FeedMessage, MatchQueueItem
from sharedrecord.models import Entry, Organisation, Patient
from tests.factories import (
    gp_bundle,
    make_credential,
    next_nhs_number,
    synthea_files,
    with_nhs_number,
)
from tests.services import CeleryWorker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class Partner:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url, self.token = base_url, token

    def _call(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, dict[str, str], Any]:
        request = urllib.request.Request(
            self.base_url + path,
            data=body,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/fhir+json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read())

    def post(self, bundle: dict[str, Any]) -> tuple[int, str]:
        status, headers, _ = self._call("POST", "/api/v1/feeds/fhir", json.dumps(bundle).encode())
        return status, headers.get("Content-Location", "")

    def wait(self, location: str, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            _, _, receipt = self._call("GET", location)
            if receipt["status"] in {"done", "rejected"}:
                return dict(receipt)
            if time.monotonic() > deadline:
                raise AssertionError(f"receipt still {receipt['status']} after {timeout}s")
            time.sleep(0.2)


@pytest.fixture
def partner(live_server: Any, celery_worker: CeleryWorker) -> Partner:
    organisation = Organisation.objects.create(
        ods_code="ZAC77", name="Synthea General", kind="acute", dsa_start="2025-01-01"
    )
    _, token = make_credential(organisation)
    return Partner(live_server.url, token)


def _expected(bundle: dict[str, Any]) -> Counter[str]:
    types = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    return Counter(
        supported=sum(n for t, n in types.items() if t in SUPPORTED),
        unsupported=sum(n for t, n in types.items() if t not in SUPPORTED),
    )


def test_synthea_patients_park_without_an_nhs_number_and_file_with_one(partner: Partner) -> None:
    bundles = [json.loads(path.read_text()) for path in synthea_files()]
    assert len(bundles) == 30

    # 1. As published: US identifiers only, so every person is parked, nothing guessed.
    locations = [partner.post(bundle) for bundle in bundles]
    assert {status for status, _ in locations} == {202}
    for bundle, (_, location) in zip(bundles, locations, strict=True):
        receipt = partner.wait(location)
        expected = _expected(bundle)
        assert receipt["status"] == "done"
        assert receipt["counts"]["parked"] == expected["supported"]
        assert receipt["counts"]["rejected"] == expected["unsupported"]
        assert receipt["counts"]["created"] == 0
    assert Patient.objects.count() == 0
    assert set(MatchQueueItem.objects.values_list("reason", flat=True)) == {"no-nhs-number"}
    # The sources panel's "last sent data" is noted once the worker commits.
    assert Organisation.objects.get(ods_code="ZAC77").last_feed_at is not None

    # 2. With an NHS number added as a UK source would send it: every supported entry filed.
    numbers = [next_nhs_number() for _ in bundles]
    sent = [
        with_nhs_number(bundle, number) for bundle, number in zip(bundles, numbers, strict=True)
    ]
    locations = [partner.post(bundle) for bundle in sent]
    for bundle, number, (_, location) in zip(sent, numbers, locations, strict=True):
        receipt = partner.wait(location)
        expected = _expected(bundle)
        assert receipt["counts"]["created"] == expected["supported"], receipt
        assert receipt["counts"]["rejected"] == expected["unsupported"]
        rejected_types = {
            i["details"]["coding"][0]["code"]
            for i in receipt["outcome"]["issue"]
            if i["severity"] == "error"
        }
        assert rejected_types <= {"unsupported-type"}
        assert Entry.objects.filter(patient__nhs_number=number).count() == expected["supported"]
    assert Patient.objects.count() == 30
    assert not Entry.objects.filter(resource_type__in=["Claim", "ExplanationOfBenefit"]).exists()


def test_five_concurrent_deliveries_of_one_message_make_one_set_of_rows(partner: Partner) -> None:
    bundle = gp_bundle(next_nhs_number(), key="concurrent")
    results: list[tuple[int, str]] = []

    def deliver() -> None:
        results.append(partner.post(bundle))

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {status for status, _ in results} == {202}
    assert len({location for _, location in results}) == 1
    receipt = partner.wait(results[0][1])
    assert receipt["counts"]["created"] == len(bundle["entry"])
    assert FeedMessage.objects.count() == 1
    assert Entry.objects.count() == len(bundle["entry"])
