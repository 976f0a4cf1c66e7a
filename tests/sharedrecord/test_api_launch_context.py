"""The read API's EHR launch context: `launch`, `launch/patient` limit patient/ scopes to one person."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from sharedrecord.models import Entry, Patient, User
from tests.factories import client_for, confirm_basis, fed_person, streamed
from tests.sharedrecord.test_oauth_lifecycle import (
    TREAT,
    authorize_query,
    consent,
    error_in,
    exchange,
    partner_app,
    pkce,
    refresh,
    staff_app,
    token_post,
)

pytestmark = pytest.mark.django_db
NHS = "https://fhir.nhs.uk/Id/nhs-number"


@pytest.fixture
def people(db: None) -> tuple[Patient, Patient]:
    return fed_person("ctx-a"), fed_person("ctx-b")


def _open_record(user: User, patient: Patient) -> Client:
    browser = client_for(user)
    confirm_basis(browser, patient)
    assert browser.get(f"/record/{patient.public_id}/").status_code == 200
    return browser


def _get(client: Client, token: str, path: str, **query: str) -> Any:
    return client.get(f"/fhir/R4/{path}", query, HTTP_AUTHORIZATION=f"Bearer {token}", **TREAT)


def _total(response: Any) -> int:
    assert response.status_code == 200
    body = streamed(response) if response.streaming else response.content.decode()
    return int(json.loads(body)["total"])


def _launched_token(client: Client, browser: Client, scope: str) -> dict[str, Any]:
    app = staff_app()
    verifier, challenge = pkce()
    answer = exchange(client, app, consent(browser, app, challenge, scope), verifier)
    assert answer.status_code == 200, answer.content
    return {**answer.json(), "app": app}


def test_launch_patient_gives_the_open_record_as_context_and_reads_only_that_person(
    client: Client, registered_gp: User, people: tuple[Patient, Patient]
) -> None:
    a, b = people
    browser = _open_record(registered_gp, a)
    tokens = _launched_token(client, browser, "launch/patient patient/*.read")
    assert tokens["patient"] == str(a.public_id)
    token = tokens["access_token"]
    assert _get(client, token, f"Patient/{a.public_id}").status_code == 200
    assert _get(client, token, f"Patient/{b.public_id}").status_code == 404
    assert _get(client, token, f"Patient/{b.public_id}/$everything").status_code == 404
    assert _get(client, token, f"Patient/{a.public_id}/$everything").status_code == 200
    assert _total(_get(client, token, "Condition", patient=str(b.public_id))) == 0
    assert _total(_get(client, token, "Condition", patient=str(a.public_id))) > 0
    assert _total(_get(client, token, "Patient", identifier=f"{NHS}|{b.nhs_number}")) == 0
    assert _total(_get(client, token, "Patient", identifier=f"{NHS}|{a.nhs_number}")) == 1
    theirs = Entry.objects.filter(patient=b, resource_type="Condition").first()
    mine = Entry.objects.filter(patient=a, resource_type="Condition").first()
    assert theirs is not None
    assert mine is not None
    assert _get(client, token, f"Condition/{theirs.public_id}").status_code == 404
    assert _get(client, token, f"Condition/{mine.public_id}").status_code == 200


def test_the_launch_scope_works_alike_and_a_refreshed_token_keeps_the_context(
    client: Client, registered_gp: User, people: tuple[Patient, Patient]
) -> None:
    a, b = people
    browser = _open_record(registered_gp, a)
    tokens = _launched_token(client, browser, "launch patient/*.read")
    assert tokens["patient"] == str(a.public_id)
    renewed = refresh(client, tokens["app"], tokens["refresh_token"])
    assert renewed.json()["patient"] == str(a.public_id)
    assert _get(client, renewed.json()["access_token"], f"Patient/{b.public_id}").status_code == 404


def test_without_a_record_open_the_launch_context_is_refused(
    client: Client, registered_gp: User
) -> None:
    browser = client_for(registered_gp)
    app = staff_app()
    _, challenge = pkce()
    query = authorize_query(app, challenge, "launch/patient patient/*.read")
    assert browser.get("/o/authorize/", query).status_code == 200
    answer = browser.post("/o/authorize/", {**query, "allow": "Authorize"})
    assert answer.status_code == 302
    assert error_in(answer) == "invalid_request"


def test_a_user_scope_beside_the_launch_context_reads_as_the_member_of_staff(
    client: Client, registered_gp: User, people: tuple[Patient, Patient]
) -> None:
    a, b = people
    browser = _open_record(registered_gp, a)
    tokens = _launched_token(client, browser, "launch/patient patient/*.read user/*.read")
    assert _get(client, tokens["access_token"], f"Patient/{b.public_id}").status_code == 200


def test_a_partner_system_cannot_have_a_launch_context(client: Client) -> None:
    app = partner_app()
    answer = token_post(
        client, app, {"grant_type": "client_credentials", "scope": "launch/patient patient/*.read"}
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_scope"


def test_the_smart_configuration_advertises_the_ehr_launch(client: Client) -> None:
    found = client.get("/fhir/R4/.well-known/smart-configuration").json()
    assert {"launch-ehr", "context-ehr-patient"} <= set(found["capabilities"])
    assert {"launch", "launch/patient"} <= set(found["scopes_supported"])
