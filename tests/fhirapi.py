"""Getting read API tokens the way clients do: through /o/token/, never made by hand."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlparse

from django.test import Client

from sharedrecord.clients import api_client_register
from sharedrecord.models import Organisation, User

REDIRECT = "https://ehr.example/callback"
TREAT = {"HTTP_X_PURPOSE_OF_USE": "TREAT"}


def partner_token(
    client: Client, organisation: Organisation, role: str = "clinical-practitioner",
    scope: str = "system/*.read", name: str = "Partner EPR",
) -> str:  # fmt: skip
    """A partner system's token: client credentials at the token endpoint."""
    issued = api_client_register(
        name=name, grant="client-credentials", organisation=organisation, role=role
    )
    return _token(client, issued.client_id, issued.client_secret,
                  {"grant_type": "client_credentials", "scope": scope})  # fmt: skip


def staff_token(client: Client, user: User, scope: str = "user/*.read") -> str:
    """A member of staff's token: the authorization code flow with PKCE, signed in as them.

    They sign in and allow in a browser of their own, which stays signed in:
    a staff token ends with the session that gave consent (sharedrecord/oauth/consent.py).
    """
    issued = api_client_register(
        name=f"Ward app {secrets.token_hex(3)}", grant="authorization-code", redirect_uris=REDIRECT
    )
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    )
    browser = Client()
    browser.force_login(user)
    query = {
        "response_type": "code", "client_id": issued.client_id, "redirect_uri": REDIRECT,
        "scope": scope, "state": "s1", "code_challenge": challenge,
        "code_challenge_method": "S256",
    }  # fmt: skip
    page = browser.get("/o/authorize/", query)
    assert page.status_code == 200, page.content[:300]
    answer = browser.post("/o/authorize/", {**query, "allow": "Authorize"})
    assert answer.status_code == 302, answer.content[:300]
    code = parse_qs(urlparse(answer["Location"]).query)["code"][0]
    return _token(client, issued.client_id, issued.client_secret, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    })  # fmt: skip


def _token(client: Client, client_id: str, secret: str, form: dict[str, str]) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = client.post("/o/token/", form, HTTP_AUTHORIZATION=f"Basic {basic}")
    assert response.status_code == 200, response.content
    return str(json.loads(response.content)["access_token"])


def fhir_get(client: Client, token: str, path: str, params: Any = None, **headers: str) -> Any:
    """GET a FHIR path with a bearer token; streamed or not, the body as JSON."""
    extra: Any = {**TREAT, **headers}
    response: Any = client.get(
        f"/fhir/R4/{path}", params or {}, HTTP_AUTHORIZATION=f"Bearer {token}", **extra
    )
    response.json_body = json.loads(body(response)) if body(response) else None
    return response


def body(response: Any) -> bytes:
    if getattr(response, "streaming", False):
        if not hasattr(response, "_read_body"):
            response._read_body = b"".join(response.streaming_content)
        return bytes(response._read_body)
    return bytes(response.content)


def entry_ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == mode and "id" in e["resource"]
    ]
