"""NDJSON uploads over real HTTP to a real Celery worker: Synthea's bulk files, one per upload."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sharedrecord.models import Entry, Patient
from tests.factories import make_credential, make_organisation, next_nhs_number
from tests.ingestion.test_feed_import import bulk_copy
from tests.services import CeleryWorker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def call(url: str, token: str, body: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST" if body is not None else "GET",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+ndjson"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def wait_done(base: str, token: str, location: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        _, _, receipt = call(base + location, token)
        if receipt["status"] in {"done", "rejected", "failed"}:
            return dict(receipt)
        assert time.monotonic() < deadline, receipt["status"]
        time.sleep(0.2)


def test_synthea_bulk_files_uploaded_one_by_one_are_filed_by_the_worker(
    live_server: Any, celery_worker: CeleryWorker, tmp_path: Path
) -> None:
    organisation = make_organisation(ods_code="ZAC92", kind="acute")
    _, token = make_credential(organisation)
    numbers = bulk_copy(tmp_path, [next_nhs_number() for _ in range(7)])
    receipts = {}
    for name in ("Patient", "Condition", "Device"):  # the Patient file first, as exported
        status, headers, body = call(
            live_server.url + "/api/v1/feeds/fhir",
            token,
            (tmp_path / f"{name}.000.ndjson").read_bytes(),
        )
        assert status == 202, body
        receipts[name] = wait_done(live_server.url, token, headers["Content-Location"])

    assert receipts["Patient"]["counts"]["created"] == 7
    assert receipts["Condition"]["counts"]["created"] == 179
    device = receipts["Device"]
    assert device["counts"]["rejected"] == 7
    texts = [i["details"]["text"] for i in device["outcome"]["issue"]]
    assert [t.split(":")[0] for t in texts] == [f"Line {n}" for n in range(1, 8)]
    assert Patient.objects.filter(nhs_number__in=numbers).count() == 7
    assert Entry.objects.filter(source_org=organisation, resource_type="Condition").count() == 179
