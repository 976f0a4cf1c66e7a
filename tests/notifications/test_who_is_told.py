"""Who is told of an event (access.notification_recipients) and what (notification_shown_as)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from sharedrecord.access import notification_recipients, notification_shown_as
from sharedrecord.models import Entry, Organisation, Patient, User
from tests.factories import fed_person, make_staff, partner

pytestmark = pytest.mark.django_db


@pytest.fixture
def record() -> Patient:
    return fed_person("told")


def told(record: Patient, source: str = "ZAC01") -> dict[str, list[str]]:
    found = notification_recipients(patient=record, source_org=partner(source))
    return {organisation.ods_code: kinds for organisation, kinds in found.items()}


def test_the_registered_practice_is_always_told(record: Patient, registered_gp: Any) -> None:
    assert "registered" in told(record)["Z81001"]


def test_an_organisation_whose_feeds_show_care_is_told(
    record: Patient, treating_clinician: Any
) -> None:
    assert told(record, source="Z81001")["ZAC01"]


def test_the_source_of_the_event_is_not_told_of_its_own_data(record: Patient) -> None:
    assert "ZAC01" not in told(record)


def test_an_organisation_without_a_relationship_is_not_told(
    record: Patient, unrelated_clinician: Any
) -> None:
    assert unrelated_clinician.organisation.ods_code not in told(record)


def test_an_organisation_whose_agreement_ended_is_not_told(record: Patient) -> None:
    community = partner("ZCM01")
    assert "ZCM01" in told(record)
    Organisation.objects.filter(pk=community.pk).update(
        dsa_end=datetime.date.today() - datetime.timedelta(days=1)
    )
    assert "ZCM01" not in told(record)


def fresh(user: User) -> User:
    """The user as the database holds them (a new organisation's dates as dates)."""
    return User.objects.select_related("organisation").get(pk=user.pk)


def restricted_entry(record: Patient) -> Entry:
    return Entry.objects.filter(patient=record, source_org__ods_code="ZMH02",
                                sensitivity__overlap=["R"]).first() or Entry.objects.get(
        patient=record, source_org__ods_code="ZMH02", resource_type="Condition")  # fmt: skip


def test_the_registered_gp_is_told_of_a_restricted_item_in_full(
    record: Patient, registered_gp: Any
) -> None:
    entry = restricted_entry(record)
    shown = notification_shown_as(viewer=fresh(registered_gp), patient=record, entry_id=entry.pk,
                                  relationships=["registered"])  # fmt: skip
    assert shown == "item"


def test_a_treating_clinician_is_told_only_that_there_is_a_restricted_item(
    record: Patient, treating_clinician: Any
) -> None:
    entry = restricted_entry(record)
    shown = notification_shown_as(viewer=fresh(treating_clinician), patient=record, entry_id=entry.pk,
                                  relationships=["encounter"])  # fmt: skip
    assert shown == "restricted"


def test_an_unrelated_clinician_is_told_of_an_ordinary_item(
    record: Patient, unrelated_clinician: Any
) -> None:
    # Whether they are told at all is notification_recipients' (above): not without a relationship.
    entry = Entry.objects.filter(patient=record, source_org__ods_code="ZAC01",
                                 resource_type="Encounter").first()  # fmt: skip
    assert entry is not None
    shown = notification_shown_as(viewer=fresh(unrelated_clinician), patient=record, entry_id=entry.pk,
                                  relationships=[])  # fmt: skip
    assert shown == "item"


def test_a_role_that_may_not_see_the_section_is_told_nothing(record: Patient) -> None:
    worker = fresh(make_staff("ZSC01", "social-care", "social-worker"))
    result = Entry.objects.filter(patient=record, section="results").first()
    assert result is not None
    assert notification_shown_as(viewer=worker, patient=record, entry_id=result.pk,
                                 relationships=["care-plan"]) == ""  # fmt: skip


def test_a_role_that_reads_no_records_is_told_nothing(record: Patient) -> None:
    officer = fresh(make_staff("Z81001", "gp-practice", "privacy-officer"))
    entry = Entry.objects.filter(patient=record).first()
    assert entry is not None
    assert notification_shown_as(viewer=officer, patient=record, entry_id=entry.pk,
                                 relationships=["registered"]) == ""  # fmt: skip
