"""The opt-out API: every permission branch for record, opt-in, list and export; all audited."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent
from optout.models import OptOut, OptOutStatus
from sharedrecord.models import User
from tests.factories import (
    feed,
    make_credential,
    next_nhs_number,
    optout_api_register,
    optout_api_withdraw,
    small_bundle,
    streamed,
)

pytestmark = pytest.mark.django_db


def as_user(client: Client, user: User | None) -> Client:
    if user is not None:
        client.force_login(user)
    return client


def test_the_export_does_not_hand_a_spreadsheet_a_formula(client: Client, practice_gp) -> None:
    number = next_nhs_number()
    note = '=HYPERLINK("http://example.invalid","details")'
    created = as_user(client, practice_gp).post(
        "/api/v1/optouts/register", {"nhs_number": number, "note": note},
        content_type="application/json",
    )  # fmt: skip
    assert created.status_code == 201, created.content
    rows = list(csv.reader(io.StringIO(streamed(client.get("/api/v1/optouts/export.csv")))))
    (row,) = [r for r in rows if r[0] == number]
    assert row[4] == "'" + note


def test_own_practice_records_an_opt_out_and_sees_it(client: Client, practice_gp) -> None:
    number = next_nhs_number()
    response = optout_api_register(
        as_user(client, practice_gp), f"{number[:3]} {number[3:6]} {number[6:]}"
    )
    assert response.status_code == 201
    assert response.json()["status"] == "opted-out"
    assert response.json()["nhs_number"] == number
    assert optout_api_register(client, number).status_code == 200  # again: unchanged
    listed = client.get("/api/v1/optouts/", {"search": number[:6]})
    assert [r["nhs_number"] for r in listed.json()["results"]] == [number]
    detail = client.get(f"/api/v1/optouts/{response.json()['id']}")
    assert [h["recorded_by"] for h in detail.json()["history"]] == ["gp.own"]
    export = client.get("/api/v1/optouts/export.csv")
    rows = list(csv.reader(io.StringIO(streamed(export))))
    assert rows[0] == ["nhs_number", "status", "route", "changed_at", "note"]
    assert rows[1][:3] == [number, "opted-out", "practice-system"]
    actions = list(
        AuditEvent.objects.filter(actor_id=practice_gp.public_id).values_list("action", flat=True)
    )
    assert sorted(actions) == sorted(
        [
            AuditAction.OPTOUT_CHANGE,
            AuditAction.OPTOUT_VIEW,
            AuditAction.OPTOUT_VIEW,
            AuditAction.OPTOUT_EXPORT,
        ]
    )


@pytest.mark.parametrize(
    "persona",
    ["hospital_clinician", "practice_clerk_without_permission", None],
)
def test_everyone_else_gets_403_for_every_operation(
    client: Client, request: pytest.FixtureRequest, practice_gp, persona: str | None
) -> None:
    number = next_nhs_number()
    assert optout_api_register(as_user(Client(), practice_gp), number).status_code == 201
    user = request.getfixturevalue(persona) if persona else None
    caller = as_user(client, user)
    expected = 403  # DRF answers a caller with no session 403 not_authenticated
    entry = OptOut.objects.get(nhs_number=number)
    responses = {
        "register": optout_api_register(caller, next_nhs_number()),
        "withdraw": optout_api_withdraw(caller, number),
        "list": caller.get("/api/v1/optouts/"),
        "detail": caller.get(f"/api/v1/optouts/{entry.public_id}"),
        "export": caller.get("/api/v1/optouts/export.csv"),
    }
    assert {name: r.status_code for name, r in responses.items()} == dict.fromkeys(
        responses, expected
    )
    code = "permission_denied" if user else "not_authenticated"
    for response in responses.values():
        assert response.json()["error"]["code"] == code
    assert OptOut.objects.get(nhs_number=number).status == OptOutStatus.OPTED_OUT
    if user is not None:
        denied = AuditEvent.objects.filter(actor_id=user.public_id, outcome="denied")
        assert denied.count() == len(responses)


def test_another_practice_sees_only_its_own_entries_and_cannot_opt_others_in(
    client: Client, practice_gp, other_practice_gp
) -> None:
    number = next_nhs_number()
    optout_api_register(as_user(Client(), practice_gp), number)
    entry = OptOut.objects.get(nhs_number=number)
    other = as_user(client, other_practice_gp)
    # The same 400 as for a number nobody opted out (it was 403: a leak of the other entry).
    refused = optout_api_withdraw(other, number)
    assert refused.status_code == 400
    assert refused.json() == optout_api_withdraw(other, next_nhs_number()).json()
    assert other.get("/api/v1/optouts/").json()["results"] == []
    assert other.get(f"/api/v1/optouts/{entry.public_id}").status_code == 404
    export = streamed(other.get("/api/v1/optouts/export.csv"))
    assert number not in export
    own = next_nhs_number()
    assert optout_api_register(other, own).status_code == 201


def test_the_holding_practice_opts_a_person_back_in(client: Client, practice_gp) -> None:
    number = next_nhs_number()
    optout_api_register(as_user(client, practice_gp), number)
    response = optout_api_withdraw(client, number)
    assert response.status_code == 200
    assert response.json()["status"] == "opted-in"


def test_bad_nhs_numbers_get_a_clear_error_without_echoing_them(
    client: Client, practice_gp
) -> None:
    response = optout_api_register(as_user(client, practice_gp), "9912003890")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "nhs_number": ["Enter a valid 10-digit NHS number."]
    }
    assert "9912003890" not in response.content.decode()


def test_partner_systems_learn_who_opted_back_in_and_needs_a_resend(
    client: Client, practice, practice_gp
) -> None:
    credential, token = make_credential(practice)
    number = next_nhs_number()
    feed(credential, small_bundle(number))
    gp = as_user(Client(), practice_gp)
    optout_api_register(gp, number)
    optout_api_withdraw(gp, number)
    _, stranger_token = make_credential()
    url = "/api/v1/optouts/opted-in?since=2020-01-01T00:00:00Z"
    mine = client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert mine.status_code == 200
    assert mine.json()["nhs_numbers"] == [number]
    theirs = client.get(url, headers={"Authorization": f"Bearer {stranger_token}"})
    assert theirs.json()["nhs_numbers"] == []  # they never sent data for this person
    assert client.get(url).status_code == 401


def test_the_openapi_document_describes_the_registry(client: Client, practice_gp) -> None:
    assert client.get("/api/schema/").status_code == 403  # no session
    schema = as_user(client, practice_gp).get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/v1/optouts/register", "/api/v1/optouts/withdraw", "/api/v1/feeds/fhir"):
        assert path in paths
    assert client.get("/api/docs/").status_code == 200


def test_a_bad_page_number_is_a_clear_400(client: Client, practice_gp) -> None:
    response = as_user(client, practice_gp).get("/api/v1/optouts/", {"page": "abc"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert as_user(client, practice_gp).get("/api/v1/optouts/", {"page": "0"}).status_code == 400
