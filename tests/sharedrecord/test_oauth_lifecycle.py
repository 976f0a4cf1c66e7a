"""The OAuth2 server behind the read API: what it refuses, when tokens end, what it audits."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from audit.models import AuditEvent
from sharedrecord.clients import ApiClientIssued, api_client_register
from sharedrecord.models import User
from tests.factories import client_for, partner
from tests.fhirapi import REDIRECT
from tests.fhirapi import TREAT as _TREAT

pytestmark = pytest.mark.django_db

NHS = "https://fhir.nhs.uk/Id/nhs-number"
FORM = "application/x-www-form-urlencoded"
TREAT: Any = _TREAT  # extra request headers, as Client takes them


# ------------------------------------------------------------------ helpers: a client's view


def pkce(verifier: str | None = None) -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge (RFC 7636)."""
    verifier = verifier or secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def staff_app(name: str = "Ward app") -> ApiClientIssued:
    return api_client_register(
        name=f"{name} {secrets.token_hex(3)}", grant="authorization-code", redirect_uris=REDIRECT
    )


def partner_app(name: str = "Partner EPR") -> ApiClientIssued:
    return api_client_register(
        name=f"{name} {secrets.token_hex(3)}",
        grant="client-credentials",
        organisation=partner("ZAC01"),
        role="clinical-practitioner",
    )


def authorize_query(
    app: ApiClientIssued, challenge: str, scope: str = "user/*.read", **extra: str
) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def consent(
    browser: Client, app: ApiClientIssued, challenge: str, scope: str = "user/*.read"
) -> str:
    """The member of staff sees the consent page and allows: the authorization code."""
    query = authorize_query(app, challenge, scope)
    page = browser.get("/o/authorize/", query)
    assert page.status_code == 200, page.content[:300]
    answer = browser.post("/o/authorize/", {**query, "allow": "Authorize"})
    assert answer.status_code == 302, answer.content[:300]
    return code_in(answer)


def code_in(response: Any) -> str:
    return str(parse_qs(urlparse(response["Location"]).query)["code"][0])


def error_in(response: Any) -> str:
    return str(parse_qs(urlparse(response["Location"]).query).get("error", [""])[0])


def basic(app: ApiClientIssued, secret: str | None = None) -> str:
    pair = f"{app.client_id}:{app.client_secret if secret is None else secret}"
    return f"Basic {base64.b64encode(pair.encode()).decode()}"


def token_post(client: Client, app: ApiClientIssued, form: dict[str, str]) -> Any:
    return client.post("/o/token/", form, HTTP_AUTHORIZATION=basic(app))


def exchange(
    client: Client, app: ApiClientIssued, code: str, verifier: str, **overrides: str | None
) -> Any:
    form: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        **overrides,
    }
    return token_post(client, app, {k: v for k, v in form.items() if v is not None})


def refresh(client: Client, app: ApiClientIssued, refresh_token: str) -> Any:
    return token_post(client, app, {"grant_type": "refresh_token", "refresh_token": refresh_token})


@dataclass
class Chain:
    """One member of staff's authorization of one application, as the application holds it."""

    user: User
    browser: Client
    app: ApiClientIssued
    access: str
    refresh: str


def staff_chain(client: Client, user: User, scope: str = "user/*.read") -> Chain:
    browser = client_for(user)
    app = staff_app()
    verifier, challenge = pkce()
    answer = exchange(client, app, consent(browser, app, challenge, scope), verifier)
    assert answer.status_code == 200, answer.content
    tokens = answer.json()
    return Chain(user, browser, app, tokens["access_token"], tokens["refresh_token"])


def reads(client: Client, token: str) -> bool:
    """Whether the API takes the token (a person who does not exist: 404, not 401)."""
    response = client.get(
        f"/fhir/R4/Patient/{uuid.uuid4()}", HTTP_AUTHORIZATION=f"Bearer {token}", **TREAT
    )
    assert response.status_code in (401, 404), response.content
    return bool(response.status_code == 404)


@contextmanager
def clock(at: datetime.datetime) -> Iterator[None]:
    with mock.patch("django.utils.timezone.now", return_value=at):
        yield


def oauth_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(detail__via="oauth").order_by("id"))


# ------------------------------------------------------------------ 1. tokens end with the session


def test_signing_out_ends_the_tokens_that_session_authorized(
    client: Client, registered_gp: User
) -> None:
    chain = staff_chain(client, registered_gp)
    other = staff_chain(client, registered_gp)  # signed in elsewhere, still signed in
    assert reads(client, chain.access)
    assert chain.browser.post("/accounts/logout/").status_code == 302
    assert not reads(client, chain.access)
    assert refresh(client, chain.app, chain.refresh).json()["error"] == "invalid_grant"
    assert reads(client, other.access)
    assert refresh(client, other.app, other.refresh).status_code == 200


def test_a_password_change_ends_every_token_of_the_member_of_staff(
    client: Client, registered_gp: User
) -> None:
    chain = staff_chain(client, registered_gp)
    registered_gp.set_password("a brand new passphrase 2026")
    registered_gp.save()
    assert not reads(client, chain.access)
    assert refresh(client, chain.app, chain.refresh).status_code == 400


def test_deactivation_ends_the_tokens_and_reactivation_does_not_bring_them_back(
    client: Client, registered_gp: User
) -> None:
    chain = staff_chain(client, registered_gp)
    registered_gp.is_active = False
    registered_gp.save()
    assert refresh(client, chain.app, chain.refresh).status_code == 400
    assert not reads(client, chain.access)
    registered_gp.is_active = True
    registered_gp.save()
    assert refresh(client, chain.app, chain.refresh).status_code == 400
    assert not reads(client, chain.access)


def test_the_revocation_service_ends_a_chain_for_good(client: Client, registered_gp: User) -> None:
    from sharedrecord.oauth.consent import api_tokens_revoke_for

    first = staff_chain(client, registered_gp)
    second = staff_chain(client, registered_gp)
    assert api_tokens_revoke_for(user=registered_gp, reason="deactivated") == 2
    assert api_tokens_revoke_for(user=registered_gp, reason="deactivated") == 0  # idempotent
    for each in (first, second):
        assert not reads(client, each.access)
        assert refresh(client, each.app, each.refresh).status_code == 400
    # Sign-out passes its session: only what that session authorized ends.
    third = staff_chain(client, registered_gp)
    fourth = staff_chain(client, registered_gp)
    key = third.browser.session.session_key
    assert key
    assert api_tokens_revoke_for(user=registered_gp, reason="signed-out", session_key=key) == 1
    assert not reads(client, third.access)
    assert reads(client, fourth.access)
    revoked = [e for e in oauth_events() if e.detail["event"] == "token-revoked"][-1]
    assert revoked.detail["reason"] == "signed-out"
    assert revoked.actor_id == registered_gp.public_id


def test_refreshing_never_extends_the_authorization_past_its_lifetime(
    client: Client, registered_gp: User, settings: SettingsWrapper
) -> None:
    lifetime = settings.OAUTH2_PROVIDER["REFRESH_TOKEN_EXPIRE_SECONDS"]
    start = timezone.now()
    with clock(start):
        chain = staff_chain(client, registered_gp)
    # Refreshed well within the lifetime, and again: each refresh is from the same start.
    with clock(start + datetime.timedelta(seconds=lifetime - 3600)):
        answer = refresh(client, chain.app, chain.refresh)
        assert answer.status_code == 200, answer.content
        later = answer.json()["refresh_token"]
    with clock(start + datetime.timedelta(seconds=lifetime + 60)):
        assert refresh(client, chain.app, later).json()["error"] == "invalid_grant"


# ------------------------------------------------------------------ 2. every OAuth event is audited


def test_every_oauth_event_is_audited_with_a_person_or_the_client_never_the_token(
    client: Client, registered_gp: User
) -> None:
    chain = staff_chain(client, registered_gp)
    refreshed = refresh(client, chain.app, chain.refresh).json()
    # Refused at the consent page, then a bad secret at the token endpoint.
    app = staff_app()
    _, challenge = pkce()
    query = authorize_query(app, challenge)
    assert chain.browser.get("/o/authorize/", query).status_code == 200
    assert error_in(chain.browser.post("/o/authorize/", query)) == "access_denied"
    bad = client.post(
        "/o/token/",
        {"grant_type": "client_credentials", "scope": "system/*.read"},
        HTTP_AUTHORIZATION=basic(chain.app, "not-the-secret"),
    )
    assert bad.status_code == 401
    # A partner system: client credentials, introspected by itself, then revoked.
    system = partner_app("Borough EPR")
    issued = token_post(
        client, system, {"grant_type": "client_credentials", "scope": "system/*.read"}
    ).json()
    looked = client.post(
        "/o/introspect/", {"token": issued["access_token"]}, HTTP_AUTHORIZATION=basic(system)
    )
    assert looked.json()["active"] is True
    revoked = client.post(
        "/o/revoke_token/",
        {"token": refreshed["access_token"]},
        HTTP_AUTHORIZATION=basic(chain.app),
    )
    assert revoked.status_code == 200
    events = oauth_events()
    names = [e.detail["event"] for e in events]
    for name in (
        "consent-given",
        "token-issued",
        "token-refreshed",
        "consent-refused",
        "refused",
        "token-introspected",
        "token-revoked",
    ):
        assert name in names, (name, names)
    by_name = {e.detail["event"]: e for e in reversed(events)}
    for staff_event in ("consent-given", "token-refreshed", "consent-refused", "token-revoked"):
        event = by_name[staff_event]
        assert (event.actor_type, event.actor_id) == ("user", registered_gp.public_id), staff_event
        assert event.detail["client_id"] in (chain.app.client_id, app.client_id)
    issued_events = [e for e in events if e.detail["event"] == "token-issued"]
    assert {e.actor_type for e in issued_events} == {"user", "system"}
    system_issue = next(e for e in issued_events if e.actor_type == "system")
    assert system_issue.actor_org_ods == "ZAC01"
    assert system_issue.detail["client_id"] == system.client_id
    assert by_name["consent-refused"].outcome == "denied"
    assert by_name["refused"].outcome == "denied"
    assert by_name["refused"].detail["error"] == "invalid_client"
    assert by_name["token-introspected"].actor_type == "system"
    # No token, code or secret is ever written to the trail.
    secrets_seen = [
        chain.access,
        chain.refresh,
        refreshed["access_token"],
        refreshed["refresh_token"],
        issued["access_token"],
        system.client_secret,
        chain.app.client_secret,
    ]
    written = json.dumps([[e.detail, e.actor_name] for e in events])
    assert not [s for s in secrets_seen if s in written]


# ------------------------------------------------------------------ 3. and 4. the code exchange


def test_a_reused_code_is_refused_and_revokes_what_its_first_use_issued(
    client: Client, registered_gp: User
) -> None:
    browser = client_for(registered_gp)
    app = staff_app()
    verifier, challenge = pkce()
    code = consent(browser, app, challenge)
    first = exchange(client, app, code, verifier)
    assert first.status_code == 200
    tokens = first.json()
    assert reads(client, tokens["access_token"])
    again = exchange(client, app, code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert not reads(client, tokens["access_token"])
    assert refresh(client, app, tokens["refresh_token"]).status_code == 400
    event = [e for e in oauth_events() if e.detail["event"] == "token-revoked"][-1]
    assert event.detail["reason"] == "code-reused"


def test_the_token_request_must_repeat_the_redirect_uri(
    client: Client, registered_gp: User
) -> None:
    browser = client_for(registered_gp)
    app = staff_app()
    verifier, challenge = pkce()
    code = consent(browser, app, challenge)
    missing = exchange(client, app, code, verifier, redirect_uri=None)
    assert missing.status_code == 400
    assert missing.json()["error"] in ("invalid_request", "invalid_grant")
    # An authorization request must name it too (SMART App Launch requires it).
    query = authorize_query(app, challenge)
    del query["redirect_uri"]
    assert browser.get("/o/authorize/", query).status_code == 400


# ------------------------------------------------------------------ 5. and 6. how credentials travel


def test_a_token_in_a_post_search_body_is_refused(client: Client, registered_gp: User) -> None:
    chain = staff_chain(client, registered_gp)
    search = {"identifier": f"{NHS}|9434765919"}
    response = client.post(
        "/fhir/R4/Patient/_search",
        urlencode({**search, "access_token": chain.access}),
        content_type=FORM,
        **TREAT,
    )
    assert response.status_code == 401
    with_header = client.post(
        "/fhir/R4/Patient/_search",
        urlencode(search),
        content_type=FORM,
        HTTP_AUTHORIZATION=f"Bearer {chain.access}",
        **TREAT,
    )
    assert with_header.status_code == 200


def test_client_secret_post_is_refused_because_it_is_not_advertised(
    client: Client, registered_gp: User
) -> None:
    advertised = client.get("/fhir/R4/.well-known/smart-configuration").json()
    assert advertised["token_endpoint_auth_methods_supported"] == ["client_secret_basic"]
    system = partner_app()
    in_body = {"client_id": system.client_id, "client_secret": system.client_secret}
    form = {"grant_type": "client_credentials", "scope": "system/*.read", **in_body}
    answer = client.post("/o/token/", form)
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"
    # Both at once is two methods in one request (RFC 6749 section 2.3): refused too.
    assert client.post("/o/token/", form, HTTP_AUTHORIZATION=basic(system)).status_code == 401
    chain = staff_chain(client, registered_gp)
    refreshed = client.post(
        "/o/token/",
        {
            "grant_type": "refresh_token",
            "refresh_token": chain.refresh,
            "client_id": chain.app.client_id,
            "client_secret": chain.app.client_secret,
        },
    )
    assert refreshed.status_code == 401
    looked = client.post("/o/introspect/", {"token": chain.access, **in_body})
    assert looked.status_code == 401
    revoke = client.post("/o/revoke_token/", {"token": chain.access, **in_body})
    assert revoke.status_code == 401
    assert reads(client, chain.access)


def test_the_server_refuses_grants_and_response_types_it_does_not_advertise(
    client: Client, registered_gp: User
) -> None:
    system = partner_app()
    for grant in ("password", "implicit", "urn:ietf:params:oauth:grant-type:device_code"):
        answer = token_post(client, system, {"grant_type": grant, "username": "x", "password": "y"})
        assert answer.status_code == 400, (grant, answer.content)
        assert answer.json()["error"] in ("unsupported_grant_type", "unauthorized_client")
    browser = client_for(registered_gp)
    app = staff_app()
    _, challenge = pkce()
    for response_type in ("token", "none", "code token"):
        page = browser.get(
            "/o/authorize/", authorize_query(app, challenge, response_type=response_type)
        )
        assert page.status_code in (302, 400), response_type
        if page.status_code == 302:
            assert error_in(page), response_type


# ------------------------------------------------------------------ 7. consent, every time


def test_approval_prompt_auto_still_shows_the_consent_page(
    client: Client, registered_gp: User
) -> None:
    browser = client_for(registered_gp)
    app = staff_app()
    verifier, challenge = pkce()
    assert exchange(client, app, consent(browser, app, challenge), verifier).status_code == 200
    # A live token for the same scopes exists: DOT's "auto" would skip consent.
    query = authorize_query(app, pkce()[1], approval_prompt="auto")
    page = browser.get("/o/authorize/", query)
    assert page.status_code == 200
    assert b"authorizationForm" in page.content


# ------------------------------------------------------------------ 8. PKCE as RFC 7636 has it


@pytest.mark.parametrize(
    ("challenge", "method"),
    [
        ("abc", "S256"),
        ("A" * 42, "S256"),
        ("A" * 44, "S256"),
        ("A" * 42 + "+", "S256"),
        (pkce()[1], "plain"),
        (pkce()[1], ""),
    ],
    ids=["3 characters", "42", "44", "not base64url", "plain", "no method (plain)"],
)
def test_a_bad_pkce_challenge_is_refused_before_the_consent_page(
    registered_gp: User, challenge: str, method: str
) -> None:
    browser = client_for(registered_gp)
    app = staff_app()
    query = authorize_query(app, challenge)
    query["code_challenge_method"] = method
    if not method:
        del query["code_challenge_method"]
    page = browser.get("/o/authorize/", query)
    assert page.status_code == 302, page.content[:200]
    assert error_in(page) == "invalid_request"
    assert "code=" not in page["Location"]


def test_a_verifier_outside_43_to_128_characters_is_refused(
    client: Client, registered_gp: User
) -> None:
    browser = client_for(registered_gp)
    app = staff_app()
    for verifier in ("short-verifier", "x" * 129):
        _, challenge = pkce(verifier)
        code = consent(browser, app, challenge)
        answer = exchange(client, app, code, verifier)
        assert answer.status_code == 400, verifier
        assert answer.json()["error"] in ("invalid_request", "invalid_grant")


# ------------------------------------------------------------------ 9. scopes by kind of client


def test_a_staff_application_cannot_be_granted_system_scopes(
    client: Client, registered_gp: User
) -> None:
    browser = client_for(registered_gp)
    app = staff_app()
    _, challenge = pkce()
    for scope in ("system/*.read", "user/*.read system/Observation.read"):
        page = browser.get("/o/authorize/", authorize_query(app, challenge, scope))
        assert page.status_code == 302, scope
        assert error_in(page) == "invalid_scope"
        # Nor by posting the consent form with the scope written in.
        posted = browser.post(
            "/o/authorize/", {**authorize_query(app, challenge, scope), "allow": "Authorize"}
        )
        assert error_in(posted) == "invalid_scope"
    # And a partner system gets system scopes only.
    system = partner_app()
    for scope in ("user/*.read", ""):
        answer = token_post(client, system, {"grant_type": "client_credentials", "scope": scope})
        assert answer.status_code == 400, scope
        assert answer.json()["error"] == "invalid_scope"


# ------------------------------------------------------------------ 10. introspection


def test_introspection_answers_only_the_tokens_own_client_or_a_resource_server(
    client: Client, registered_gp: User, settings: SettingsWrapper
) -> None:
    chain = staff_chain(client, registered_gp)
    stranger = partner_app("Stranger")
    resource_server = partner_app("Gateway")
    settings.API_RESOURCE_SERVERS = [resource_server.client_id]

    def introspect(app: ApiClientIssued) -> Any:
        return client.post(
            "/o/introspect/", {"token": chain.access}, HTTP_AUTHORIZATION=basic(app)
        ).json()

    assert introspect(stranger) == {"active": False}
    own = introspect(chain.app)
    assert own["active"] is True
    assert own["client_id"] == chain.app.client_id
    assert introspect(resource_server)["active"] is True
    # The token in a query string is refused, and so is an access token in place of a client.
    assert (
        client.get(
            "/o/introspect/", {"token": chain.access}, HTTP_AUTHORIZATION=basic(chain.app)
        ).status_code
        == 405
    )
    as_bearer = client.post(
        "/o/introspect/", {"token": chain.access}, HTTP_AUTHORIZATION=f"Bearer {chain.access}"
    )
    assert as_bearer.status_code == 401
    # An ended chain is inactive to everyone.
    assert chain.browser.post("/accounts/logout/").status_code == 302
    assert introspect(chain.app) == {"active": False}


# ------------------------------------------------------------------ no input breaks it


def test_odd_input_to_the_oauth_endpoints_is_a_4xx_never_a_5xx(
    client: Client, registered_gp: User
) -> None:
    browser = client_for(registered_gp)
    app = staff_app()
    system = partner_app()
    _, challenge = pkce()
    good = authorize_query(app, challenge)
    odd = ["\x00", "x" * 5000, "é", "%", ""]
    answers: list[tuple[str, Any, int]] = []
    for value in odd:
        for field in ("client_id", "redirect_uri", "scope", "state", "code_challenge"):
            query = {**good, field: value}
            answers.append((f"GET {field}", value, browser.get("/o/authorize/", query).status_code))
            posted = browser.post("/o/authorize/", {**query, "allow": "Authorize"})
            answers.append((f"POST {field}", value, posted.status_code))
        for form in (
            {"grant_type": "authorization_code", "code": value, "redirect_uri": REDIRECT,
             "code_verifier": "v" * 43},
            {"grant_type": "refresh_token", "refresh_token": value},
            {"grant_type": "client_credentials", "scope": value},
            {"grant_type": value},
        ):  # fmt: skip
            answers.append((f"token {form}", value, token_post(client, system, form).status_code))
        for path in ("/o/token/", "/o/revoke_token/", "/o/introspect/"):
            garbled = client.post(path, {"token": value}, HTTP_AUTHORIZATION=f"Basic {value}")
            answers.append((f"{path} basic", value, garbled.status_code))
        revoked = client.post(
            "/o/revoke_token/", {"token": value}, HTTP_AUTHORIZATION=basic(system)
        )
        answers.append(("revoke", value, revoked.status_code))
        looked = client.post("/o/introspect/", {"token": value}, HTTP_AUTHORIZATION=basic(system))
        answers.append(("introspect", value, looked.status_code))
    assert [(what, value[:5]) for what, value, status in answers if status >= 500] == []
