"""Every route refuses an anonymous caller, except the few that hold no personal data."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.urlwalk import walk

pytestmark = pytest.mark.django_db

# Routes that are public on purpose, and why.
PUBLIC = {
    "/healthz": "liveness, no data",
    "/about": "the residents' page: organisations taking part and the access policy, no person",
    "/readyz": "readiness, no data",
    "/admin/login/": "the admin sign-in form",
    "/admin/logout/": "signing out needs no sign-in",
    "/accounts/login/": "the staff sign-in form",
    "/smart/launch": "SMART EHR launch: only a registered EHR's iss goes on (403 otherwise)",
    "/smart/callback": "SMART EHR launch: state, PKCE and the EHR's ID token are the credential",
    "/launch": "signed launch: POST only (GET 405); the signed, single-use token is the credential",
    "/accounts/oidc/start": "single sign-on: sends the browser to the provider (404 when off)",
    "/accounts/oidc/callback": "single sign-on: the provider's answer, checked (state, PKCE, ID token)",
    "/accounts/oidc/role": "single sign-on: choose one of the role profiles just vouched for",
    "/accounts/logout/": "signing out needs no sign-in (POST only)",
    "/accounts/timed-out": "the idle sign-out: POST only, with the page's CSRF token (GET is 405)",
    "/fhir/R4/metadata": "the CapabilityStatement: FHIR requires it public, no data",
    "/fhir/R4/.well-known/smart-configuration": "SMART discovery: where to get a token, no data",
    "/o/token/": "OAuth2 token endpoint: the client authenticates in its POST (GET is 405)",
    "/o/revoke_token/": "OAuth2 revocation: the client authenticates in its POST (GET is 405)",
}


def test_every_route_refuses_anonymous_callers(client: Client) -> None:
    routes = list(walk())
    assert len(routes) > 10
    unguarded = []
    for route in routes:
        if route.path in PUBLIC:
            continue
        response = client.get(route.path)
        # Only "sign in first" or "not allowed" count: a 404 or 405 would hide a
        # route that answers an anonymous caller for some other input.
        login_redirect = response.status_code == 302 and "login" in response["Location"]
        if not (login_redirect or response.status_code in {401, 403}):
            unguarded.append((route.path, response.status_code))
    assert unguarded == []


def test_the_public_routes_exist() -> None:
    paths = {route.path for route in walk()}
    assert set(PUBLIC) <= paths
