"""The registry reveals nothing about another practice's entry, through pages or API (F2).

A person is opted out while any practice's entry for them is active; each
practice sees, changes and exports only its own entries, and every answer is
the same whatever other practices hold.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.test import Client

from optout.models import OptOut, OptOutStatus
from optout.selectors import optout_blocks
from sharedrecord.models import Organisation, Patient, User
from tests.factories import (
    client_for,
    feed,
    make_credential,
    next_nhs_number,
    optout_api_register,
    optout_api_withdraw,
    small_bundle,
    streamed,
)

pytestmark = pytest.mark.django_db

SECRET_NOTE = "Told reception on Tuesday, ask for Dr Marsh"


def shape(body: dict[str, Any]) -> dict[str, Any]:
    """A response body with the values that differ per number or per moment blanked."""
    return {k: ("*" if k in {"id", "nhs_number", "changed_at"} else v) for k, v in body.items()}


def test_recording_for_someone_opted_out_elsewhere_answers_like_anyone_else(
    practice: Organisation, practice_gp: User, other_practice: Organisation, other_practice_gp: User
) -> None:
    number, fresh = next_nhs_number(), next_nhs_number()
    assert optout_api_register(client_for(practice_gp), number, SECRET_NOTE).status_code == 201
    other = client_for(other_practice_gp)

    elsewhere = optout_api_register(other, number)
    never = optout_api_register(other, fresh)

    assert (elsewhere.status_code, never.status_code) == (201, 201)
    assert shape(elsewhere.json()) == shape(never.json())
    assert elsewhere.json()["practice"] == other_practice.ods_code
    body = elsewhere.content.decode()
    assert practice.ods_code not in body
    assert SECRET_NOTE not in body
    assert OptOut.objects.filter(nhs_number=number).count() == 2


def test_recording_it_again_is_still_idempotent_for_the_second_practice(
    practice_gp: User, other_practice_gp: User
) -> None:
    number = next_nhs_number()
    optout_api_register(client_for(practice_gp), number)
    other = client_for(other_practice_gp)
    first = optout_api_register(other, number)
    again = optout_api_register(other, number)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]


def test_the_record_page_for_someone_opted_out_elsewhere_reveals_nothing(
    practice_gp: User, other_practice_gp: User
) -> None:
    number = next_nhs_number()
    optout_api_register(client_for(practice_gp), number, SECRET_NOTE)
    page = client_for(other_practice_gp)
    done = page.post("/optouts/record", {"nhs_number": number, "step": "confirm"}, follow=True)
    body = done.content.decode()
    assert done.status_code == 200
    assert "Opt-out recorded" in body
    assert "already opted out" not in body
    assert SECRET_NOTE not in body
    assert "Riverside" not in body


def test_opting_back_in_answers_the_same_whatever_other_practices_hold(
    practice_gp: User, other_practice_gp: User
) -> None:
    held_elsewhere, opted_in_elsewhere = next_nhs_number(), next_nhs_number()
    holder = client_for(practice_gp)
    optout_api_register(holder, held_elsewhere, SECRET_NOTE)
    optout_api_register(holder, opted_in_elsewhere)
    optout_api_withdraw(holder, opted_in_elsewhere)
    other = client_for(other_practice_gp)
    never = next_nhs_number()

    answers = [optout_api_withdraw(other, n) for n in (held_elsewhere, opted_in_elsewhere, never)]

    assert [a.status_code for a in answers] == [400, 400, 400]
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert answers[0].json()["error"]["fields"] == {
        "nhs_number": ["There is no opt-out recorded by your practice for this NHS number."]
    }
    assert OptOut.objects.get(nhs_number=held_elsewhere).status == OptOutStatus.OPTED_OUT


def test_the_person_stays_opted_out_while_any_practice_holds_an_entry(
    practice: Organisation, practice_gp: User, other_practice_gp: User
) -> None:
    number = next_nhs_number()
    first, second = client_for(practice_gp), client_for(other_practice_gp)
    optout_api_register(first, number)
    optout_api_register(second, number)

    assert optout_api_withdraw(first, number).json()["status"] == "opted-in"
    assert optout_blocks(nhs_number=number)
    credential, _ = make_credential(practice)
    assert feed(credential, small_bundle(number)).counts["blocked"] == 2

    assert optout_api_withdraw(second, number).json()["status"] == "opted-in"
    assert not optout_blocks(nhs_number=number)
    assert feed(credential, small_bundle(number, key="again")).counts["created"] == 2


def test_lists_details_and_exports_show_only_the_callers_own_entry(
    practice_gp: User, other_practice_gp: User
) -> None:
    number = next_nhs_number()
    first, second = client_for(practice_gp), client_for(other_practice_gp)
    optout_api_register(first, number, SECRET_NOTE)
    own = optout_api_register(second, number, "their own words").json()

    listed = second.get("/api/v1/optouts/").json()["results"]
    assert [(r["id"], r["note"]) for r in listed] == [(own["id"], "their own words")]
    detail = second.get(f"/api/v1/optouts/{own['id']}").json()
    assert [(h["practice"], h["note"]) for h in detail["history"]] == [
        ("Z81002", "their own words")
    ]
    for text in (
        second.get("/optouts/").content.decode(),
        second.get(f"/optouts/{own['id']}").content.decode(),
        streamed(second.get("/api/v1/optouts/export.csv")),
    ):
        assert SECRET_NOTE not in text
        assert "Z81001" not in text
    rows = list(csv.reader(io.StringIO(streamed(second.get("/api/v1/optouts/export.csv")))))
    assert [r[0] for r in rows[1:]] == [number]
    assert rows[1][4] == "their own words"


def test_the_opted_in_feed_waits_until_no_entry_is_active_and_counts_every_entrys_sources(
    client: Client, practice: Organisation, practice_gp: User, other_practice_gp: User
) -> None:
    credential, token = make_credential(practice)
    number = next_nhs_number()
    feed(credential, small_bundle(number))
    first, second = client_for(practice_gp), client_for(other_practice_gp)
    optout_api_register(first, number)  # this one removed the practice's data
    optout_api_register(second, number)  # nothing left to remove
    url = "/api/v1/optouts/opted-in?since=2020-01-01T00:00:00Z"
    headers = {"Authorization": f"Bearer {token}"}

    optout_api_withdraw(first, number)
    assert client.get(url, headers=headers).json()["nhs_numbers"] == []  # still opted out
    optout_api_withdraw(second, number)  # the last entry: it removed nothing, but the first one did
    assert client.get(url, headers=headers).json()["nhs_numbers"] == [number]

    optout_api_withdraw(second, number)  # again: nothing changes, listed once
    assert client.get(url, headers=headers).json()["nhs_numbers"] == [number]
    assert not Patient.objects.filter(nhs_number=number).exists()
