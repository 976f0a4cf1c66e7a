"""Clinicians see when a source that normally sends data has gone quiet (stale-data banner)."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.utils import timezone

from sharedrecord.models import Organisation, Patient, User
from tests.factories import confirm_basis, main_html, signed_in

pytestmark = pytest.mark.django_db

DAY = datetime.timedelta(days=1)
BANNER = "Borough General Hospital data may be out of date: last received 3 days ago."


def page_for(client: Client, user: User, record: Patient, path: str = "") -> str:
    signed_in(client, user)
    confirm_basis(client, record)
    return main_html(client.get(f"/record/{record.public_id}/{path}"))


def hospital_last_sent(ago: datetime.timedelta, every: datetime.timedelta | None) -> None:
    """Time travel: the acute trust last sent data `ago`, and normally sends every `every`."""
    Organisation.objects.filter(ods_code="ZAC01").update(
        last_feed_at=timezone.now() - ago, feed_expected_interval=every
    )


@pytest.mark.parametrize("persona", ["registered_gp", "treating_clinician"])
def test_a_source_silent_past_its_interval_gets_a_banner_and_a_late_tag(
    client: Client, record: Patient, persona: str, request: pytest.FixtureRequest
) -> None:
    hospital_last_sent(3 * DAY + datetime.timedelta(hours=2), every=DAY)
    page = page_for(client, request.getfixturevalue(persona), record)
    assert BANNER in page
    assert 'data-source="ZAC01"' in page
    panel = page[page.index('id="sources"') :]
    assert "Late" in panel
    assert "usually sends data at least every 1 day" in panel
    # The banner is on every part of the record, not only the summary.
    assert BANNER in page_for(client, request.getfixturevalue(persona), record, "problems")


def test_a_source_within_its_interval_gets_no_banner(
    client: Client, registered_gp: User, record: Patient
) -> None:
    hospital_last_sent(datetime.timedelta(hours=20), every=DAY)
    page = page_for(client, registered_gp, record)
    assert "may be out of date" not in page
    assert "stale-source" not in page


def test_a_source_with_no_expected_interval_is_never_called_late(
    client: Client, registered_gp: User, record: Patient
) -> None:
    hospital_last_sent(30 * DAY, every=None)
    assert "may be out of date" not in page_for(client, registered_gp, record)


def test_a_source_that_never_sent_anything_is_not_late(
    client: Client, registered_gp: User, record: Patient
) -> None:
    Organisation.objects.create(
        ods_code="ZNEW2", name="New Hospice", kind="other", dsa_start="2025-01-01",
        feed_expected_interval=DAY,
    )  # fmt: skip
    assert "New Hospice data may be out of date" not in page_for(client, registered_gp, record)


def test_late_is_decided_at_the_moment_of_viewing() -> None:
    now = timezone.now()
    org = Organisation(last_feed_at=now - 2 * DAY, feed_expected_interval=DAY)
    assert org.feed_is_late(now)
    assert not org.feed_is_late(now - 1.5 * DAY)
    assert not Organisation(last_feed_at=None, feed_expected_interval=DAY).feed_is_late(now)
    assert not Organisation(last_feed_at=now - 9 * DAY, feed_expected_interval=None).feed_is_late(
        now
    )
