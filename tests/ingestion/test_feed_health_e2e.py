"""End to end: feeds over HTTP through a real worker, then a source made late by time travel.

The operator's feed health (API and page), the clinician's stale-data banner and the
metrics the FeedSilent alert reads all say the same thing.
"""

from __future__ import annotations

import datetime
import json
import time
import urllib.request
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings as SettingsWrapper

from ingestion.models import FeedMessage
from sharedrecord.models import Organisation, Patient, StaffRole, User
from tests.factories import (
    PROGRAMME_ODS,
    client_for,
    confirm_basis,
    gp_bundle,
    main_html,
    make_credential,
    make_staff,
    next_nhs_number,
    partner,
    small_bundle,
)
from tests.services import CeleryWorker

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DAY = datetime.timedelta(days=1)


def post(base_url: str, token: str, bundle: dict[str, Any]) -> str:
    request = urllib.request.Request(
        base_url + "/api/v1/feeds/fhir",
        data=json.dumps(bundle).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
        return str(json.loads(response.read())["id"])


def wait_for(check: Any, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_source_made_late_shows_late_to_operators_clinicians_and_metrics(
    live_server: Any, celery_worker: CeleryWorker, settings: SettingsWrapper
) -> None:
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME_ODS]
    settings.METRICS_TOKEN = "e2e-metrics-token"
    hospital = Organisation.objects.create(
        ods_code="ZLT01", name="Lateham Hospital", kind="acute", dsa_start="2025-01-01",
        feed_expected_interval=DAY,
    )  # fmt: skip
    _, hospital_token = make_credential(hospital)
    _, gp_token = make_credential(partner("Z81001"))
    number = next_nhs_number()
    ids = [
        post(live_server.url, gp_token, gp_bundle(number, key="e2e-late")),
        post(live_server.url, hospital_token, small_bundle(number, key="e2e-late")),
    ]
    wait_for(
        lambda: (
            set(FeedMessage.objects.filter(public_id__in=ids).values_list("status", flat=True))
            == {"done"}
        ),
        "the worker to process both messages",
    )
    # The worker notes the feed as seen once the message commits.
    wait_for(lambda: Organisation.objects.get(pk=hospital.pk).last_feed_at, "the feed noted")

    operator = client_for(make_staff(PROGRAMME_ODS, "other", StaffRole.FEED_OPERATOR))

    def hospital_health() -> dict[str, Any]:
        rows = operator.get("/api/v1/feeds/health").json()
        return dict(next(r for r in rows if r["ods_code"] == "ZLT01"))

    assert hospital_health()["state"] == "on-time"
    gp = User.objects.create_user(
        "e2e.gp", password="persona-password-123", organisation=partner("Z81001"), role="gp"
    )
    clinician = client_for(gp)
    record = Patient.objects.get(nhs_number=number)
    confirm_basis(clinician, record)
    assert "Lateham Hospital data may be out of date" not in main_html(
        clinician.get(f"/record/{record.public_id}/")
    )

    # Time travel: the hospital's last message, and its feed, three days ago.
    three_days_ago = timezone.now() - 3 * DAY - datetime.timedelta(hours=1)
    FeedMessage.objects.filter(organisation=hospital).update(received_at=three_days_ago)
    Organisation.objects.filter(pk=hospital.pk).update(last_feed_at=three_days_ago)

    health = hospital_health()
    assert (health["state"], health["late"]) == ("late", True)
    assert 'data-state="late"' in operator.get("/operations/feeds").content.decode()
    page = main_html(clinician.get(f"/record/{record.public_id}/"))
    assert "Lateham Hospital data may be out of date: last received 3 days ago." in page

    # What the FeedSilent alert computes: time() - last received > expected interval.
    metrics = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer e2e-metrics-token")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.content.decode())
        for s in family.samples
    }
    labels = (("organisation", "ZLT01"),)
    last = samples[("sharedrecord_feed_last_received_timestamp_seconds", labels)]
    expected = samples[("sharedrecord_feed_expected_interval_seconds", labels)]
    assert expected == DAY.total_seconds()
    assert time.time() - last > expected

    # A new message through the worker puts the system back on time for operators.
    ids.append(post(live_server.url, hospital_token, small_bundle(number, key="e2e-back")))
    wait_for(
        lambda: FeedMessage.objects.get(public_id=ids[-1]).status == "done",
        "the worker to process the new message",
    )
    assert hospital_health()["state"] == "on-time"
