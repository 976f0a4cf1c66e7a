"""Finding a person: only what identifies them; unknown and opted-out look the same; audited."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent
from optout.models import OptOutRoute
from optout.services import optout_register
from sharedrecord.models import Organisation, StaffRole, User
from tests.factories import feed, make_credential, next_nhs_number, small_bundle

pytestmark = pytest.mark.django_db
PERSONAS = ["registered_gp", "treating_clinician", "unrelated_clinician"]


def _main(response) -> str:
    html = response.content.decode()
    found = re.search(r"<main.*?</main>", html, flags=re.DOTALL)
    assert found is not None
    return found.group(0)


@pytest.fixture
def practice_feed(db: None):
    practice, _ = Organisation.objects.get_or_create(
        ods_code="Z81001",
        defaults={"name": "Riverside", "kind": "gp-practice", "dsa_start": "2025-01-01"},
    )
    return practice, make_credential(practice)[0]


def _search(client: Client, user: User, number: str):
    client.force_login(user)
    return client.post("/search", {"nhs_number": number})


@pytest.mark.parametrize("persona", PERSONAS)
def test_a_clinician_finds_a_person_by_nhs_number(
    client: Client, request: pytest.FixtureRequest, persona: str
) -> None:
    user = request.getfixturevalue(persona)
    number = next_nhs_number()
    feed(
        make_credential(
            Organisation.objects.get_or_create(
                ods_code="Z81001",
                defaults={"name": "R", "kind": "gp-practice", "dsa_start": "2025-01-01"},
            )[0]
        )[0],
        small_bundle(number),
    )
    response = _search(client, user, f"{number[:3]} {number[3:6]} {number[6:]}")
    body = _main(response)
    assert "Margaret Ellison" in body
    assert "14 March 1941" in body
    assert "Type 2 diabetes" not in response.content.decode()  # identity only, nothing clinical
    event = AuditEvent.objects.get(action=AuditAction.PATIENT_SEARCH, actor_id=user.public_id)
    assert (event.nhs_number, event.detail) == (number, {"by": "nhs-number", "found": 1})


@pytest.mark.parametrize("persona", PERSONAS)
def test_opted_out_and_unknown_people_look_exactly_the_same(
    client: Client, request: pytest.FixtureRequest, persona: str, practice_feed
) -> None:
    user = request.getfixturevalue(persona)
    practice, credential = practice_feed
    opted_out, unknown = next_nhs_number(), next_nhs_number()
    feed(credential, small_bundle(opted_out))
    optout_register(
        nhs_number=opted_out,
        practice=practice,
        route=OptOutRoute.PRACTICE_REQUEST,
        recorded_by_system="test",
    )
    gone = _main(_search(client, user, opted_out))
    never = _main(_search(client, user, unknown))
    assert "No shared care record is available for this person" in gone
    assert gone == never
    assert (
        AuditEvent.objects.filter(
            action=AuditAction.PATIENT_SEARCH, actor_id=user.public_id, detail__found=0
        ).count()
        == 2
    )


def test_staff_outside_clinical_and_care_roles_cannot_search(client: Client) -> None:
    practice = Organisation.objects.create(
        ods_code="Z81009", name="P", kind="gp-practice", dsa_start="2025-01-01"
    )
    clerk = User.objects.create_user(
        "clerk.s", password="x-long-password-1", organisation=practice, role=StaffRole.ADMIN_CLERK
    )
    assert _search(client, clerk, next_nhs_number()).status_code == 403


def test_staff_of_an_organisation_without_an_agreement_cannot_search(client: Client) -> None:
    lapsed = Organisation.objects.create(
        ods_code="ZAC09", name="L", kind="acute", dsa_start="2020-01-01", dsa_end="2021-01-01"
    )
    doctor = User.objects.create_user(
        "doc.l",
        password="x-long-password-1",
        organisation=lapsed,
        role=StaffRole.CLINICAL_PRACTITIONER,
    )
    assert _search(client, doctor, next_nhs_number()).status_code == 403


def test_the_nhs_number_never_travels_in_the_url(client: Client, treating_clinician) -> None:
    client.force_login(treating_clinician)
    assert client.get("/search", {"nhs_number": next_nhs_number()}).status_code == 405


def _by_name(client: Client, **fields: str):
    data = {"by": "demographics", "family_name": "Ellison", "dob_day": "14", "dob_month": "3",
            "dob_year": "1941", **fields}  # fmt: skip
    return client.post("/search", data)


@pytest.mark.parametrize("persona", PERSONAS)
def test_a_clinician_finds_a_person_by_family_name_and_date_of_birth(
    client: Client, request: pytest.FixtureRequest, persona: str, practice_feed
) -> None:
    user = request.getfixturevalue(persona)
    _, credential = practice_feed
    number = next_nhs_number()
    feed(credential, small_bundle(number))
    client.force_login(user)
    body = _main(_by_name(client, family_name=" ellison "))
    assert "1 person found" in body
    assert number[:3] in body
    assert "Riverside" in body  # the registered practice by name
    event = AuditEvent.objects.get(action=AuditAction.PATIENT_SEARCH, actor_id=user.public_id)
    assert event.detail["by"] == "demographics"
    assert event.detail["found"] == 1
    assert "Ellison" not in str(event.detail)  # ids only, never the name searched for


def test_postcode_and_sex_narrow_a_name_search(
    client: Client, registered_gp, practice_feed
) -> None:
    _, credential = practice_feed
    feed(credential, small_bundle(next_nhs_number()))
    client.force_login(registered_gp)
    assert "1 person found" in _main(_by_name(client, postcode="zz11aa"))
    assert "No shared care record" in _main(_by_name(client, postcode="ZZ9 9ZZ"))
    assert "1 person found" in _main(_by_name(client, gender="female"))
    assert "No shared care record" in _main(_by_name(client, gender="male"))


def test_more_matches_than_the_cap_show_nobody(
    client: Client, registered_gp, practice_feed
) -> None:
    _, credential = practice_feed
    for i in range(6):
        feed(credential, small_bundle(next_nhs_number(), key=f"cap{i}"))
    client.force_login(registered_gp)
    body = _main(_by_name(client))
    assert "More than 5 people match" in body
    assert "View record" not in body
    event = AuditEvent.objects.get(action=AuditAction.PATIENT_SEARCH)
    assert event.detail["patients"] == []
    assert "1 person found" not in _main(_by_name(client, postcode="ZZ1 1AA"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"family_name": ""}, "Enter the family name"),
        ({"dob_day": ""}, "Enter the date of birth, including a day, month and year"),
        ({"dob_day": "31", "dob_month": "2"}, "Date of birth must be a real date"),
        ({"dob_year": "2999"}, "Date of birth must be in the past"),
        ({"gender": "robot"}, "Choose a sex from the list"),
    ],
)
def test_a_bad_name_search_says_what_to_fix(client: Client, registered_gp, fields, message) -> None:
    client.force_login(registered_gp)
    response = _by_name(client, **fields)
    assert response.status_code == 400
    assert message in _main(response)
    assert not AuditEvent.objects.filter(action=AuditAction.PATIENT_SEARCH).exists()
