"""The practice staff pages: record with a confirm step, list and search, history, opt back in."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditEvent
from optout.models import OptOut, OptOutStatus
from sharedrecord.models import Patient
from tests.factories import feed, make_credential, next_nhs_number, signed_in, small_bundle

pytestmark = pytest.mark.django_db


def test_recording_needs_a_confirm_step_that_says_what_will_happen(
    client: Client, practice, practice_gp
) -> None:
    number = next_nhs_number()
    feed(make_credential(practice)[0], small_bundle(number))
    page = signed_in(client, practice_gp)
    form = page.get("/optouts/record")
    assert form.status_code == 200
    assert "Record an opt-out" in form.content.decode()
    check = page.post(
        "/optouts/record",
        {"nhs_number": f"{number[:3]} {number[3:6]} {number[6:]}", "step": "check"},
    )
    body = check.content.decode()
    assert "Any shared care record for this person is deleted now" in body
    assert Patient.objects.filter(nhs_number=number).exists()  # nothing happens before confirming
    assert not OptOut.objects.exists()

    done = page.post("/optouts/record", {"nhs_number": number, "step": "confirm"}, follow=True)
    assert done.status_code == 200
    assert "Opt-out recorded" in done.content.decode()
    assert not Patient.objects.filter(nhs_number=number).exists()
    assert OptOut.objects.get(nhs_number=number).status == OptOutStatus.OPTED_OUT


def test_an_invalid_nhs_number_is_explained_on_the_page(client: Client, practice_gp) -> None:
    response = signed_in(client, practice_gp).post(
        "/optouts/record", {"nhs_number": "12345", "step": "check"}
    )
    body = response.content.decode()
    assert "There is a problem" in body
    assert "Enter a valid 10-digit NHS number" in body
    assert not OptOut.objects.exists()


def test_list_search_history_and_opting_back_in(client: Client, practice_gp) -> None:
    page = signed_in(client, practice_gp)
    numbers = [next_nhs_number(), next_nhs_number()]
    for number in numbers:
        page.post("/optouts/record", {"nhs_number": number, "step": "confirm"})
    listing = page.get("/optouts/").content.decode()
    assert "2 entries" in listing
    found = page.get("/optouts/", {"search": numbers[0]}).content.decode()
    assert "1 entry" in found
    entry = OptOut.objects.get(nhs_number=numbers[0])
    detail = page.get(f"/optouts/{entry.public_id}").content.decode()
    assert "Patient asked at the practice" in detail
    confirm = page.get(f"/optouts/{entry.public_id}/opt-in").content.decode()
    assert "nothing deleted comes back by itself" in confirm
    done = page.post(f"/optouts/{entry.public_id}/opt-in", {"step": "confirm"}, follow=True)
    assert "Their record fills again as services send updates" in done.content.decode()
    entry.refresh_from_db()
    assert entry.status == OptOutStatus.OPTED_IN


@pytest.mark.parametrize("persona", ["hospital_clinician", "practice_clerk_without_permission"])
def test_other_staff_get_403_and_it_is_audited(
    client: Client, request: pytest.FixtureRequest, persona: str
) -> None:
    user = request.getfixturevalue(persona)
    page = signed_in(client, user)
    for url in ("/optouts/", "/optouts/record"):
        response = page.get(url)
        assert response.status_code == 403
        assert "You cannot do this" in response.content.decode()
    assert AuditEvent.objects.filter(actor_id=user.public_id, outcome="denied").count() == 2


def test_the_pages_ask_anonymous_callers_to_sign_in(client: Client) -> None:
    response = client.get("/optouts/record")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_another_practice_cannot_see_an_entry(
    client: Client, practice_gp, other_practice_gp
) -> None:
    number = next_nhs_number()
    signed_in(Client(), practice_gp).post(
        "/optouts/record", {"nhs_number": number, "step": "confirm"}
    )
    entry = OptOut.objects.get(nhs_number=number)
    assert (
        signed_in(client, other_practice_gp).get(f"/optouts/{entry.public_id}").status_code == 404
    )
