"""Feed health for the programme's feed operators (page and API), and replaying failures."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from audit.models import AuditAction, AuditEvent
from ingestion.health import FeedState, feed_state
from ingestion.models import FeedMessage, MessageKind, MessageStatus
from sharedrecord.access import feed_operator_for
from sharedrecord.models import Organisation, StaffRole, User
from tests.factories import (
    PROGRAMME_ODS,
    client_for,
    feed,
    feed_kind,
    make_credential,
    make_organisation,
    make_staff,
    next_nhs_number,
    small_bundle,
)

pytestmark = pytest.mark.django_db

HOUR = datetime.timedelta(hours=1)


@pytest.fixture(autouse=True)
def _programme(settings: SettingsWrapper) -> None:
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME_ODS]


@pytest.fixture
def operator() -> User:
    return make_staff(PROGRAMME_ODS, "other", StaffRole.FEED_OPERATOR)


def health_of(client: Client, organisation: Organisation) -> dict[str, Any]:
    response = client.get("/api/v1/feeds/health")
    assert response.status_code == 200
    (row,) = [r for r in response.json() if r["ods_code"] == organisation.ods_code]
    return dict(row)


def test_a_system_is_late_only_past_its_expected_interval() -> None:
    now = timezone.now()
    assert feed_state(last=None, expected=HOUR, now=now) == FeedState.NEVER
    assert feed_state(last=now - 2 * HOUR, expected=None, now=now) == FeedState.NOT_MONITORED
    assert feed_state(last=now - HOUR / 2, expected=HOUR, now=now) == FeedState.ON_TIME
    assert feed_state(last=now - HOUR, expected=HOUR, now=now) == FeedState.ON_TIME
    assert feed_state(last=now - 2 * HOUR, expected=HOUR, now=now) == FeedState.LATE


def test_only_the_programmes_feed_operators_see_feed_health(
    operator: User, registered_gp: User, treating_clinician: User, unrelated_clinician: User
) -> None:
    assert feed_operator_for(operator) is not None
    for user in (registered_gp, treating_clinician, unrelated_clinician):
        client = client_for(user)
        assert client.get("/operations/feeds").status_code == 403
        assert client.get("/api/v1/feeds/health").status_code == 403
    elsewhere = make_staff("ZAC01", "acute", StaffRole.FEED_OPERATOR)
    assert feed_operator_for(elsewhere) is None
    assert client_for(elsewhere).get("/api/v1/feeds/health").status_code == 403
    officer = make_staff(PROGRAMME_ODS, "other", StaffRole.PRIVACY_OFFICER)
    assert client_for(officer).get("/operations/feeds").status_code == 403
    operator.is_active = False
    operator.save()
    assert feed_operator_for(operator) is None
    assert Client().get("/operations/feeds").status_code == 302  # sign in first


def test_the_home_page_leads_operators_and_only_them_to_feed_health(
    operator: User, registered_gp: User
) -> None:
    assert "/operations/feeds" in client_for(operator).get("/").content.decode()
    assert "/operations/feeds" not in client_for(registered_gp).get("/").content.decode()


def test_a_feed_made_late_by_time_travel_is_shown_late(operator: User) -> None:
    hospital = make_organisation(feed_expected_interval=HOUR)
    credential, _ = make_credential(hospital)
    message = feed(credential, small_bundle(next_nhs_number(), key="late"))
    client = client_for(operator)
    assert health_of(client, hospital)["state"] == "on-time"
    # Time travel: the message arrived three hours ago, and nothing since.
    FeedMessage.objects.filter(pk=message.pk).update(received_at=timezone.now() - 3 * HOUR)
    row = health_of(client, hospital)
    assert (row["state"], row["late"]) == ("late", True)
    assert row["expected_interval_seconds"] == 3600
    page = client.get("/operations/feeds").content.decode()
    assert f'data-credential="{credential.public_id}" data-state="late"' in page
    assert "1 late feed" in page


def test_the_days_rate_rejects_and_parks_are_counted_by_reason(operator: User) -> None:
    source = make_organisation()
    credential, _ = make_credential(source)
    feed(credential, small_bundle(next_nhs_number(), key="r1"))
    feed(credential, small_bundle(next_nhs_number(), key="r2"))
    feed(credential, small_bundle(None, key="r3"))  # no NHS number: parked
    feed_kind(credential, MessageKind.FHIR_JSON, b'{"resourceType": "Patient"}')  # refused
    old = feed(credential, small_bundle(next_nhs_number(), key="r4"))
    FeedMessage.objects.filter(pk=old.pk).update(
        received_at=timezone.now() - datetime.timedelta(days=2)
    )
    row = health_of(client_for(operator), source)
    assert row["received_last_24_hours"] == 4
    assert sum(row["hourly"]) == 4
    assert row["hourly"][-1] == 4  # the latest hour is last
    rejected = FeedMessage.objects.get(credential=credential, status=MessageStatus.REJECTED)
    assert row["rejects"] == {rejected.issues[0]["code"]: 1}
    assert sum(row["parks"].values()) == 2  # the Patient and its Condition
    assert row["state"] == "not-monitored"


def test_an_operator_replays_a_failed_message_and_it_is_audited(
    operator: User, django_capture_on_commit_callbacks: Any
) -> None:
    source = make_organisation()
    credential, _ = make_credential(source)
    message = feed(credential, small_bundle(next_nhs_number(), key="f1"), process=False)
    FeedMessage.objects.filter(pk=message.pk).update(
        status=MessageStatus.FAILED, attempts=5,
        failure={"stage": "upsert", "entries": [], "expression": [], "error": "OperationalError"},
    )  # fmt: skip
    client = client_for(operator)
    (failure,) = health_of(client, source)["failures"]
    assert (failure["id"], failure["stage"]) == (str(message.public_id), "upsert")
    assert str(message.public_id) in client.get("/operations/feeds").content.decode()
    with django_capture_on_commit_callbacks(execute=False):  # no worker here to take it
        response = client.post(f"/operations/feeds/replay/{message.public_id}")
    assert response.status_code == 302
    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.RECEIVED, 0)
    event = AuditEvent.objects.filter(action=AuditAction.ADMIN_CHANGE).latest("id")
    assert event.detail["object"] == str(message.public_id)
    assert event.actor_id == operator.public_id
    # Only a failed message is replayed; anyone else is refused.
    assert client.post(f"/operations/feeds/replay/{message.public_id}").status_code == 404
    clinician = client_for(make_staff("ZAC01", "acute", StaffRole.CLINICAL_PRACTITIONER))
    assert clinician.post(f"/operations/feeds/replay/{message.public_id}").status_code == 403
