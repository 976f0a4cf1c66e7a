"""Staff sign in through a real OpenID provider (node oidc-provider, CIS2-shaped) in chromium."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from joserfc.jwk import RSAKey
from playwright.sync_api import Page, expect

from audit.models import AuditAction, AuditEvent
from sharedrecord.models import StaffIdentity, User
from tests.browser.conftest import serious_accessibility_violations
from tests.factories import fed_person, make_organisation
from tests.oidc.server import oidc_provider

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SECRET = "a-test-client-secret-for-the-browser-tests"
CLIENT_KEY = RSAKey.generate_key(2048, parameters={"kid": "rp-1"})


@pytest.fixture(scope="module")
def issuer(live_server: Any) -> Iterator[str]:
    redirect = {
        "redirect_uris": [f"{live_server.url}/accounts/oidc/callback"],
        "post_logout_redirect_uris": [f"{live_server.url}/accounts/login/"],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
    clients: list[dict[str, Any]] = [
        {"client_id": "shared-care-record", "client_secret": SECRET, **redirect},
        {
            "client_id": "shared-care-record-pkjwt",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "RS256",
            "jwks": {"keys": [CLIENT_KEY.as_dict(private=False)]},
            **redirect,
        },
    ]
    with oidc_provider(clients) as url:
        yield url


def _settings(issuer: str, **extra: Any) -> dict[str, Any]:
    policy = {**settings.CONTENT_SECURITY_POLICY}
    directives = {**policy["DIRECTIVES"], "form-action": ["'self'", issuer]}
    return {
        "OIDC_ISSUER": issuer,
        "OIDC_CLIENT_ID": "shared-care-record",
        "OIDC_CLIENT_SECRET": SECRET,
        "OIDC_CLIENT_PRIVATE_KEY_FILE": "",
        "CONTENT_SECURITY_POLICY": {**policy, "DIRECTIVES": directives},
        **extra,
    }


@pytest.fixture
def sso(issuer: str, db: None) -> Iterator[str]:
    make_organisation(ods_code="ZSSO1", name="Borough Hospital")
    make_organisation(ods_code="ZSSO2", name="Borough Practice", kind="gp-practice")
    make_organisation(ods_code="ZSSO9", name="Former Partner", dsa_end=datetime.date(2025, 6, 1))
    cache.clear()
    with override_settings(**_settings(issuer)):
        yield issuer
    cache.clear()


def _sign_in_as(page: Page, base: str, login: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_role("link", name="Sign in with NHS Care Identity Service 2").click()
    page.get_by_label("Login").fill(login)
    page.get_by_role("button", name="Sign in").click()


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_a_clinician_signs_in_with_their_nhs_identity_and_reads_a_record(
    live_server: Any, page: Page, sso: str
) -> None:
    person = fed_person("sso-browser")
    page.goto(f"{live_server.url}/accounts/login/")
    assert serious_accessibility_violations(page) == []
    _sign_in_as(page, live_server.url, "ada.one")

    expect(page.get_by_role("heading", name="Shared care record")).to_be_visible()
    expect(
        page.get_by_text("Ada One, Clinical practitioner (doctor), Borough Hospital")
    ).to_be_visible()
    user = User.objects.get(staff_identity__subject="ada.one")
    assert (user.role, user.organisation.ods_code) == ("clinical-practitioner", "ZSSO1")  # type: ignore[union-attr]
    assert not user.is_staff
    assert not user.has_usable_password()
    signed = _events(AuditAction.SIGN_IN)[-1]
    assert signed.actor_name == "ada.one@5550001"
    assert (signed.detail["via"], signed.detail["acr"], signed.detail["assurance_level"]) == (
        "oidc", "AAL3_ANY", 3,
    )  # fmt: skip

    n = person.nhs_number
    page.get_by_label("Find a person by NHS number").fill(n)
    page.get_by_role("button", name="Search", exact=True).click()
    page.get_by_role("link", name="View record").click()
    page.get_by_label("Describe your role in this person's care").fill("Treating them on the ward")
    page.get_by_label("I am directly involved in this person's care").check()
    page.get_by_role("button", name="View record").click()
    expect(page.get_by_role("heading", name="Summary", exact=True)).to_be_visible()
    viewed = _events(AuditAction.RECORD_VIEW)[-1]
    assert (viewed.actor_name, viewed.patient_id) == ("ada.one@5550001", person.public_id)


def test_a_clinician_with_two_roles_chooses_one_and_every_event_names_it(
    live_server: Any, page: Page, sso: str
) -> None:
    _sign_in_as(page, live_server.url, "bea.two")
    expect(page.get_by_role("heading", name="Which role are you working in today?")).to_be_visible()
    assert serious_accessibility_violations(page) == []
    page.get_by_label("Nurse, Borough Hospital").check()
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("Bea Two, Nurse, Borough Hospital")).to_be_visible()
    person = fed_person("sso-roles")
    page.get_by_label("Find a person by NHS number").fill(person.nhs_number)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_text("1 person found")).to_be_visible()
    since = _events(AuditAction.SIGN_IN)[-1].id
    later = AuditEvent.objects.filter(id__gte=since, actor_type="user")
    assert {(e.actor_name, e.actor_org_ods, e.actor_role) for e in later} == {
        ("bea.two@5550003", "ZSSO1", "nurse")
    }
    assert not StaffIdentity.objects.filter(role_profile_id="5550002").exists()


def test_the_role_the_provider_selected_is_used_without_asking(
    live_server: Any, page: Page, sso: str
) -> None:
    _sign_in_as(page, live_server.url, "cal.three")
    expect(
        page.get_by_text("Cal Three, Clinical practitioner (doctor), Borough Hospital")
    ).to_be_visible()
    assert _events(AuditAction.SIGN_IN)[-1].detail["role_profile"] == "5550005"


@pytest.mark.parametrize(
    ("login", "code", "words"),
    [
        ("dee.ended", "no-agreement", "has no active data sharing agreement"),
        ("eve.unmapped", "unmapped-role", "This role has no access to the shared care record"),
    ],
)
def test_a_role_without_agreement_or_mapping_is_refused_clearly(
    live_server: Any, page: Page, sso: str, login: str, code: str, words: str
) -> None:
    _sign_in_as(page, live_server.url, login)
    expect(page.get_by_role("heading", name="You cannot sign in with this role")).to_be_visible()
    expect(page.get_by_text(words)).to_be_visible()
    assert serious_accessibility_violations(page) == []
    assert not User.objects.filter(staff_identity__subject=login).exists()
    refused = _events(AuditAction.SIGN_IN_FAILED)[-1]
    assert (refused.detail["via"], refused.detail["reason"]) == ("oidc", code)
    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()


@override_settings(RECORD_MIN_AAL=3)
def test_a_password_only_sign_in_may_search_but_not_read(
    live_server: Any, page: Page, sso: str
) -> None:
    person = fed_person("sso-weak")
    _sign_in_as(page, live_server.url, "fay.password")
    page.get_by_label("Find a person by NHS number").fill(person.nhs_number)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_text("1 person found")).to_be_visible()
    page.get_by_role("link", name="View record").click()
    expect(page.get_by_text("Reading a record needs a stronger sign-in")).to_be_visible()
    assert _events(AuditAction.SIGN_IN)[-1].detail["assurance_level"] == 1


def test_a_callback_that_was_not_started_here_is_refused(
    live_server: Any, page: Page, sso: str
) -> None:
    page.goto(f"{live_server.url}/accounts/oidc/callback?code=forged&state=forged")
    expect(page.get_by_text("This sign-in was not started here")).to_be_visible()
    assert _events(AuditAction.SIGN_IN_FAILED)[-1].detail["reason"] == "state"


def test_a_replayed_callback_is_refused(live_server: Any, page: Page, sso: str) -> None:
    answers: list[str] = []
    page.on(
        "request", lambda r: answers.append(r.url) if "/accounts/oidc/callback" in r.url else None
    )
    _sign_in_as(page, live_server.url, "ada.one")
    expect(page.get_by_role("heading", name="Shared care record")).to_be_visible()
    page.goto(answers[-1])  # the same code and state again
    expect(page.get_by_text("This sign-in was not started here")).to_be_visible()


def test_signing_out_ends_the_session_here_and_at_the_provider(
    live_server: Any, page: Page, sso: str
) -> None:
    _sign_in_as(page, live_server.url, "ada.one")
    expect(page.get_by_role("heading", name="Shared care record")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{sso}/session/end**")
    page.get_by_role("button", name="Yes, sign me out").click()
    page.wait_for_url(f"{live_server.url}/accounts/login/**")
    assert _events(AuditAction.SIGN_OUT)[-1].detail == {"via": "oidc"}
    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    # The provider's session ended too: signing in asks for the login again.
    page.get_by_role("link", name="Sign in with NHS Care Identity Service 2").click()
    expect(page.get_by_label("Login")).to_be_visible()


def test_the_client_can_authenticate_with_a_signed_jwt(
    live_server: Any, page: Page, sso: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "client.pem"
    key_file.write_bytes(CLIENT_KEY.as_pem(private=True))
    extra = {"OIDC_CLIENT_ID": "shared-care-record-pkjwt", "OIDC_CLIENT_SECRET": ""}
    with override_settings(
        **_settings(
            sso, OIDC_CLIENT_PRIVATE_KEY_FILE=str(key_file), OIDC_CLIENT_KEY_ID="rp-1", **extra
        )
    ):
        _sign_in_as(page, live_server.url, "ada.one")
        expect(page.get_by_role("heading", name="Shared care record")).to_be_visible()
    signed = _events(AuditAction.SIGN_IN)[-1]
    assert (signed.actor_name, signed.detail["via"]) == ("ada.one@5550001", "oidc")
