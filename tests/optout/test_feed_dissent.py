"""A dissent code in a GP practice's own feed records an opt-out as if the practice had."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from audit.models import AuditEvent
from optout.models import OptOut, OptOutStatus
from sharedrecord.models import Entry, Patient
from tests.factories import feed, make_credential, make_organisation, next_nhs_number, small_bundle

pytestmark = pytest.mark.django_db
DISSENT = ("https://sharedrecord.nhs.invalid/CodeSystem/test", "dissent-shared-record")


@pytest.fixture(autouse=True)
def dissent_code(settings: SettingsWrapper) -> None:
    settings.OPTOUT_FEED_CODES = ["|".join(DISSENT)]


def with_dissent(number: str, key: str = "d") -> dict[str, Any]:
    bundle = small_bundle(number, key=key)
    condition = bundle["entry"][1]["resource"]
    condition["code"] = {"coding": [{"system": DISSENT[0], "code": DISSENT[1]}]}
    return bundle


def test_a_practice_feed_with_the_code_opts_the_person_out(practice) -> None:
    number = next_nhs_number()
    credential, _ = make_credential(practice)
    feed(credential, small_bundle(number))
    assert Patient.objects.filter(nhs_number=number).exists()

    message = feed(credential, with_dissent(number))

    optout = OptOut.objects.get(nhs_number=number)
    assert (optout.status, optout.route, optout.practice) == (
        OptOutStatus.OPTED_OUT,
        "feed-code",
        practice,
    )
    assert optout.changes.get().recorded_by_system == "EPR"
    assert message.counts["blocked"] == 2
    assert not Patient.objects.filter(nhs_number=number).exists()
    assert not Entry.objects.filter(patient__nhs_number=number).exists()
    event = AuditEvent.objects.get(action="optout-change", nhs_number=number)
    assert (event.actor_type, event.actor_name, event.actor_org_ods) == ("system", "EPR", "Z81001")


def test_the_code_from_a_hospital_changes_nothing(db: None) -> None:
    number = next_nhs_number()
    credential, _ = make_credential(make_organisation(kind="acute"))
    message = feed(credential, with_dissent(number))
    assert not OptOut.objects.exists()
    assert message.counts["created"] == 2


def test_the_code_for_someone_registered_elsewhere_is_only_a_warning(
    practice, other_practice
) -> None:
    number = next_nhs_number()
    feed(make_credential(practice)[0], small_bundle(number))  # registered with Z81001
    message = feed(make_credential(other_practice)[0], with_dissent(number, key="o"))
    assert not OptOut.objects.exists()
    assert [i["code"] for i in message.issues] == ["dissent-not-recorded"]
    assert Patient.objects.filter(nhs_number=number).exists()
