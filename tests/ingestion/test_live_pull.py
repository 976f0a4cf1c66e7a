"""Live pull at the moment of care (issue 25): asked after the basis, scoped, audited, never stored.

Each test runs a real FHIR source on 127.0.0.1 (tests/pullsource.py) and opens
the record through the real pages (or the read API); nothing is mocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from jwcrypto import jwk  # type: ignore[import-untyped]

from audit.models import AuditAction, AuditEvent
from ingestion.pulling import pull_tokens_forget
from sharedrecord.models import Entry, Patient, PullAuth, PullMode, PullSource
from sharedrecord.pullsources import pull_source_register
from tests.factories import (
    confirm_basis,
    make_optout,
    make_organisation,
    make_patient,
    make_staff,
    partner,
    signed_in,
)
from tests.fhirapi import body, fhir_get, partner_token, staff_token
from tests.pullsource import PullSourceServer, SourceState, care_items, person_resource

pytestmark = pytest.mark.django_db
SECRET_NAME = "PULL_TEST_SECRET"


@pytest.fixture(autouse=True)
def _fresh_tokens(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(SECRET_NAME, "pull-secret-123")
    pull_tokens_forget()
    yield
    pull_tokens_forget()


@pytest.fixture
def person() -> Patient:
    return make_patient(registered_gp_ods="Z81001")


@pytest.fixture
def source(person: Patient) -> Iterator[PullSourceServer]:
    state = SourceState()
    state.people[person.nhs_number] = person_resource(person.nhs_number)
    state.records["src-p1"] = care_items()
    with PullSourceServer(state) as server:
        yield server


def _register(
    server: PullSourceServer,
    name: str = "Livesource Hospital",
    resource_types: tuple[str, ...] = ("AllergyIntolerance", "Condition"),
    **more: Any,
) -> PullSource:
    organisation = make_organisation(name=name)
    return pull_source_register(
        organisation=organisation, base_url=server.fhir, token_url=server.token_url,
        client_id=server.state.client_id, secret_name=SECRET_NAME, timeout_seconds=Decimal("1.5"),
        resource_types=list(resource_types), **more,
    )  # fmt: skip


CLAIM = "Seen in clinic today; I am the treating doctor"


def _open(client: Client, user: Any, patient: Patient) -> str:
    """The record summary as the user sees it (a self-declared basis when the feeds show none)."""
    signed_in(client, user)
    claim = "" if user.organisation.ods_code == patient.registered_gp_ods else CLAIM
    assert confirm_basis(client, patient, claim).status_code == 302
    response = client.get(f"/record/{patient.public_id}/")
    assert response.status_code == 200
    return response.content.decode()


def _pulls(user: Any) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(actor_id=user.public_id, action=AuditAction.LIVE_PULL).order_by(
            "id"
        )
    )


def _row_counts() -> dict[str, int]:
    """Every table's row count but the audit trail's and sessions': what a pull must not change."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        tables = [t for (t,) in cursor.fetchall() if not t.startswith(("audit_", "django_session"))]
        counts = {}
        for table in tables:
            cursor.execute(f'SELECT count(*) FROM "{table}"')
            counts[table] = cursor.fetchone()[0]
    return counts


def test_it_shows_live_items_with_their_source_and_time_and_stores_nothing(
    client: Client, registered_gp: Any, person: Patient, source: PullSourceServer
) -> None:
    _register(source)
    signed_in(client, registered_gp)
    confirm_basis(client, person)
    before = _row_counts()
    page = client.get(f"/record/{person.public_id}/").content.decode()
    assert "Collected live from other systems" in page
    assert "Livesource Hospital" in page
    assert "retrieved live at" in page
    assert "Allergy to penicillin" in page
    assert "Asthma" in page
    assert "Hypertension" not in page  # another person's item is never shown
    assert _row_counts() == before
    assert not Entry.objects.filter(patient=person).exists()


def test_it_withholds_live_items_as_it_withholds_stored_ones(
    client: Client,
    registered_gp: Any,
    treating_clinician: Any,
    person: Patient,
    source: PullSourceServer,
) -> None:
    _register(source)
    gp_page = _open(client, registered_gp, person)
    assert "Depressive disorder" in gp_page  # the registered practice: a relationship
    ae_page = _open(Client(), treating_clinician, person)
    assert "Depressive disorder" not in ae_page  # no relationship: restricted is withheld
    assert "1 live item withheld" in ae_page
    [event] = _pulls(treating_clinician)
    assert event.detail["withheld"] == 1
    assert "Condition/live-restricted" not in event.detail["shown"]


def test_it_never_shows_a_section_outside_the_viewers_role(
    client: Client, person: Patient, source: PullSourceServer
) -> None:
    _register(source)
    social_worker = make_staff("ZSC01", "social-care", "social-worker")  # no "problems"
    page = _open(client, social_worker, person)
    assert "Allergy to penicillin" in page
    assert "Asthma" not in page
    [event] = _pulls(social_worker)
    assert event.detail["shown"] == ["AllergyIntolerance/live-allergy"]


def test_it_audits_each_pull_and_tells_the_source_who_asks_and_why(
    client: Client, registered_gp: Any, person: Patient, source: PullSourceServer
) -> None:
    pull = _register(source)
    _open(client, registered_gp, person)
    [event] = _pulls(registered_gp)
    assert event.patient_id == person.public_id
    assert event.detail["source"] == pull.organisation.ods_code
    assert event.detail["answer"] == "answered"
    assert sorted(event.detail["shown"]) == [
        "AllergyIntolerance/live-allergy",
        "Condition/live-asthma",
        "Condition/live-restricted",
    ]
    assert event.detail["invalid"] == 2  # the invalid item and another person's
    assert event.purpose == "TREAT"
    searches = [h for method, path, h in source.state.requests if path == "/fhir/Patient/_search"]
    [headers] = searches
    assert headers["X-Request-User"] == str(registered_gp.public_id)
    assert headers["X-Request-User-Organisation"] == "Z81001"
    assert headers["X-Request-User-Role"].startswith("gp")
    assert headers["X-Purpose-Of-Use"] == "TREAT"
    # The NHS number never travels in a URL.
    assert all(person.nhs_number not in path for _, path, _ in source.state.requests)


def test_it_asks_nothing_before_the_access_basis(
    client: Client, registered_gp: Any, person: Patient, source: PullSourceServer
) -> None:
    _register(source)
    response = signed_in(client, registered_gp).get(f"/record/{person.public_id}/")
    assert response.status_code == 302
    assert source.state.requests == []
    assert _pulls(registered_gp) == []


def test_it_never_pulls_for_an_opted_out_person(
    client: Client, registered_gp: Any, source: PullSourceServer
) -> None:
    someone = make_patient(registered_gp_ods="Z81001")
    source.state.people[someone.nhs_number] = person_resource(someone.nhs_number)
    _register(source)
    signed_in(client, registered_gp)
    confirm_basis(client, someone)
    make_optout(someone.nhs_number, partner("Z81001"))
    response = client.get(f"/record/{someone.public_id}/")
    page = response.content.decode() if response.status_code == 200 else ""
    assert "Allergy to penicillin" not in page
    assert source.state.requests == []  # nobody was asked
    events = _pulls(registered_gp)
    assert all(e.detail.get("reason") == "opted-out" for e in events)


@pytest.mark.parametrize("trouble", ["slow", "failing", "no-secret"])
def test_it_names_a_source_that_does_not_answer(
    client: Client, registered_gp: Any, person: Patient, source: PullSourceServer,
    monkeypatch: pytest.MonkeyPatch, trouble: str,
) -> None:  # fmt: skip
    _register(source, name="Slowfield Hospital")
    if trouble == "slow":
        source.state.delay = 3.0  # the timeout is 1.5 s
    elif trouble == "failing":
        source.state.fail = True
    else:
        monkeypatch.delenv(SECRET_NAME)
    page = _open(client, registered_gp, person)
    assert "Slowfield Hospital system did not answer" in page
    assert "its information is not shown" in page
    assert "Allergy to penicillin" not in page
    [event] = _pulls(registered_gp)
    assert event.outcome == "failed"
    assert event.detail["answer"] == {"slow": "timeout"}.get(trouble, "error")


def test_it_asks_every_source_and_shows_each_apart(
    client: Client, registered_gp: Any, person: Patient, source: PullSourceServer
) -> None:
    other = SourceState(client_id="second")
    other.people[person.nhs_number] = person_resource(person.nhs_number, pid="other-1")
    other.records["other-1"] = care_items("other-1", prefix="second")[:1]
    with PullSourceServer(other) as second:
        _register(source, name="First Hospital")
        pull = _register(second, name="Second Hospice")
        pull.client_id = "second"
        pull.save()
        page = _open(client, registered_gp, person)
    assert "First Hospital" in page
    assert "Second Hospice" in page
    assert 'data-item="AllergyIntolerance/second-allergy"' in page
    assert len(_pulls(registered_gp)) == 2


def test_a_push_only_or_inactive_source_is_not_asked(
    client: Client, registered_gp: Any, person: Patient, source: PullSourceServer
) -> None:
    pull = _register(source, mode=PullMode.PUSH_ONLY)
    _open(client, registered_gp, person)
    pull_source_register(
        organisation=pull.organisation, base_url=source.fhir, token_url=source.token_url,
        client_id="pull-client", secret_name=SECRET_NAME, active=False,
    )  # fmt: skip
    _open(Client(), registered_gp, person)
    assert source.state.requests == []


def test_the_token_is_kept_until_it_expires(
    client: Client, registered_gp: Any, person: Patient, source: PullSourceServer
) -> None:
    _register(source)
    _open(client, registered_gp, person)
    _open(Client(), registered_gp, person)
    assert source.state.tokens_issued == 1


def test_it_signs_in_with_a_private_key_jwt(
    client: Client, registered_gp: Any, person: Patient, source: PullSourceServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    key = jwk.JWK.generate(kty="RSA", size=2048, kid="k1")
    source.state.public_key = jwk.JWK.from_json(key.export_public())
    monkeypatch.setenv(SECRET_NAME, key.export_to_pem(private_key=True, password=None).decode())
    _register(source, auth=PullAuth.PRIVATE_KEY_JWT, key_id="k1")
    page = _open(client, registered_gp, person)
    assert "Allergy to penicillin" in page
    # A wrong key is refused by the source, and the page says so.
    other = jwk.JWK.generate(kty="RSA", size=2048, kid="k1")
    monkeypatch.setenv(SECRET_NAME, other.export_to_pem(private_key=True, password=None).decode())
    pull_tokens_forget()
    page = _open(Client(), registered_gp, person)
    assert "Livesource Hospital system did not answer" in page


def test_everything_carries_live_items_marked_with_their_source(
    client: Client, registered_gp: Any, person: Patient, source: PullSourceServer
) -> None:
    _register(source)
    signed_in(client, registered_gp)
    token = staff_token(client, registered_gp)
    before = _row_counts()
    bundle = fhir_get(client, token, f"Patient/{person.public_id}/$everything").json_body
    resources = [e["resource"] for e in bundle["entry"]]
    live = [r for r in resources if r.get("id") == "live-allergy"]
    assert len(live) == 1
    assert live[0]["meta"]["source"] == source.fhir
    assert "retrieved live at" in live[0]["meta"]["tag"][-1]["display"]
    assert _row_counts() == before
    [event] = _pulls(registered_gp)
    assert event.detail["via"] == "fhir-api"


def test_live_results_keep_the_precision_their_source_sent(
    client: Client, registered_gp: Any, person: Patient, source: PullSourceServer
) -> None:
    # A live result is read with its decimals (5.10, not 5.1) and passed on so through
    # $everything. Floats compare 5.1 == 5.10: the texts are compared.
    source.state.records["src-p1"].append({
        "resourceType": "Observation", "id": "live-potassium", "status": "final",
        "code": {"text": "Potassium"}, "subject": {"reference": "Patient/src-p1"},
        "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": Decimal("5.10"), "unit": "mmol/L"},
        "referenceRange": [{"low": {"value": Decimal("3.50")}, "high": {"value": 5}}],
    })  # fmt: skip
    _register(source, resource_types=("AllergyIntolerance", "Condition", "Observation"))
    page = _open(client, registered_gp, person)
    assert 'data-item="Observation/live-potassium"' in page  # listed (the page shows no values)
    token = staff_token(client, registered_gp)
    response = fhir_get(client, token, f"Patient/{person.public_id}/$everything")
    assert response.status_code == 200
    text = body(response).decode()
    assert '"valueQuantity":{"value":5.10,"unit":"mmol/L"}' in text
    assert '"low":{"value":3.50}' in text


def test_everything_names_a_source_that_did_not_answer(
    client: Client, registered_gp: Any, person: Patient, source: PullSourceServer
) -> None:
    _register(source, name="Quietford Trust")
    source.state.fail = True
    signed_in(client, registered_gp)
    token = staff_token(client, registered_gp)
    bundle = fhir_get(client, token, f"Patient/{person.public_id}/$everything").json_body
    texts = json.dumps([e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"])
    assert "Quietford Trust system did not answer; its information is not shown." in texts


def test_the_command_registers_a_source_once_and_refuses_bad_values() -> None:
    organisation = make_organisation(ods_code="ZPL01")
    args = [
        "--org", "ZPL01", "--base-url", "https://epr.example/fhir/R4/",
        "--token-url", "https://epr.example/token", "--client-id", "c1",
        "--secret-name", "EPR_PULL_SECRET", "--mode", "pull-only", "--timeout", "2.5",
    ]  # fmt: skip
    call_command("pull_source_register", *args)
    call_command("pull_source_register", *args)
    source = PullSource.objects.get(organisation=organisation)
    assert source.mode == PullMode.PULL_ONLY
    assert source.base_url == "https://epr.example/fhir/R4"
    assert source.timeout_seconds == Decimal("2.5")
    changes = AuditEvent.objects.filter(
        action=AuditAction.ADMIN_CHANGE, detail__model="sharedrecord.PullSource"
    )
    assert changes.count() == 1  # the second run changed nothing
    with pytest.raises(CommandError, match="environment variable"):
        call_command("pull_source_register", *args[:-6], "--secret-name", "lower-case")
    with pytest.raises(CommandError):
        call_command("pull_source_register", *args[:-2], "--timeout", "90")
    with pytest.raises(CommandError, match="kid"):
        call_command("pull_source_register", *args, "--auth", "private-key-jwt")


def test_a_partner_system_reading_for_its_user_is_audited_with_that_user(
    client: Client, person: Patient, source: PullSourceServer
) -> None:
    """The other side of a pull: this platform as a source, read by another region's system."""
    _register(source)
    neighbour = make_organisation(name="Neighbouring ICB Hospital", ods_code="ZNB01")
    token = partner_token(client, neighbour, name="Neighbour shared record")
    response = fhir_get(
        client, token, f"Patient/{person.public_id}/$everything",
        HTTP_X_REQUEST_USER="0b0e7f4e-1111-4222-8333-944455556666",
        HTTP_X_REQUEST_USER_NAME="Dr Ada Example", HTTP_X_REQUEST_USER_ROLE="gp R8000",
        HTTP_X_REQUEST_USER_ORGANISATION="ZB001",
    )  # fmt: skip
    assert response.status_code == 200
    event = AuditEvent.objects.filter(
        action=AuditAction.API_READ, patient_id=person.public_id
    ).latest("id")
    assert event.actor_org_ods == "ZNB01"
    assert event.purpose == "TREAT" or event.detail["purpose"] == "TREAT"
    assert event.detail["on_behalf_of"] == {
        "user_id": "0b0e7f4e-1111-4222-8333-944455556666",
        "user": "Dr Ada Example",
        "role": "gp R8000",
        "organisation": "ZB001",
    }
    # A partner system's read is not passed on to this platform's own pull sources.
    assert source.state.requests == []


# ------------------------------------------------------------------ SharetoCare: explicit consent, pull-only


def test_a_pull_only_organisations_feeds_are_refused(client: Client) -> None:
    from ingestion.models import FeedMessage
    from tests.factories import gp_bundle, make_credential, next_nhs_number
    from tests.ingestion.conftest import FeedClient

    organisation = make_organisation()
    pull_source_register(
        organisation=organisation, base_url="https://epr.example/fhir", token_url="https://epr.example/token",
        client_id="c", secret_name=SECRET_NAME, mode=PullMode.PULL_ONLY,
    )  # fmt: skip
    _, token = make_credential(organisation)
    response = FeedClient(client, token).post(gp_bundle(next_nhs_number()))
    assert response.status_code == 403
    assert [i["details"]["coding"][0]["code"] for i in response.json()["issue"]] == ["pull-only"]
    assert FeedMessage.objects.count() == 0


def test_explicit_consent_with_pull_only_sources_asks_each_visit_stores_nothing_and_tells_the_gp(
    client: Client,
    treating_clinician: Any,
    person: Patient,
    source: PullSourceServer,
    settings: Any,
) -> None:
    """SharetoCare end to end: permission now, collected live, nothing kept, the GP sees every access."""
    from sharedrecord.models import AccessBasis, BasisKind
    from tests.factories import main_html, make_officer

    settings.CONSENT_MODEL = "explicit"
    # The person's own practice and the hospital are both pull-only sources.
    gp_practice = partner("Z81001")
    pull_source_register(
        organisation=gp_practice, base_url=source.fhir, token_url=source.token_url,
        client_id="pull-client", secret_name=SECRET_NAME, mode=PullMode.PULL_ONLY,
        resource_types=["AllergyIntolerance", "Condition"],
    )  # fmt: skip
    signed_in(client, treating_clinician)
    basis_page = main_html(client.get(f"/access/{person.public_id}/"))
    assert "The person has given me permission to view their shared care record now" in basis_page
    assert source.state.requests == []  # nothing is asked before permission
    assert confirm_basis(client, person, CLAIM).status_code == 302
    assert AccessBasis.objects.get(user=treating_clinician).kind == BasisKind.CONSENT
    before = _row_counts()
    page = client.get(f"/record/{person.public_id}/").content.decode()
    assert "Riverside Medical Practice" in page
    assert "Allergy to penicillin" in page
    assert _row_counts() == before  # collected live, nothing stored
    assert not Entry.objects.exists()
    # The next visit (another session) asks for permission again.
    again = signed_in(Client(), treating_clinician).get(f"/record/{person.public_id}/")
    assert again.status_code == 302
    assert again["Location"] == f"/access/{person.public_id}/"
    # The practice's privacy officer sees the access and the live pull in its record holder view.
    officer = signed_in(Client(), make_officer("Z81001", "gp-practice"))
    results = officer.get("/api/v1/audit/events", {"nhs_number": person.nhs_number}).json()[
        "results"
    ]
    actions = {(r["action"], r["actor_name"]) for r in results}
    assert ("live-pull", treating_clinician.username) in actions
    assert ("record-view", treating_clinician.username) in actions


def test_it_never_guesses_between_two_people_a_source_holds(
    client: Client, registered_gp: Any, person: Patient, source: PullSourceServer
) -> None:
    _register(source, name="Twinford Hospital")
    source.state.duplicate = True
    page = _open(client, registered_gp, person)
    assert "It holds more than one person with this NHS number." in page
    assert "Allergy to penicillin" not in page
    assert not [p for _, p, _ in source.state.requests if "$everything" in p]
    [event] = _pulls(registered_gp)
    assert event.detail["answer"] == "ambiguous"


def test_a_token_the_source_refuses_is_forgotten_and_replaced(
    client: Client, registered_gp: Any, person: Patient, source: PullSourceServer
) -> None:
    _register(source)
    assert "Allergy to penicillin" in _open(client, registered_gp, person)
    source.state.token_generation += 1  # the source revoked what it issued
    assert "Livesource Hospital system did not answer" in _open(Client(), registered_gp, person)
    assert "Allergy to penicillin" in _open(Client(), registered_gp, person)
    assert source.state.tokens_issued == 2
