"""A small SMART on FHIR EHR for the tests: authorization server, ID tokens, Patient read.

It runs for real on a free localhost port (a thread with its own HTTP server) and holds
to what an EHR launch needs: the `launch` value it issued, the registered client and
redirect URI, `aud` = its FHIR base, PKCE S256, a code used once, client_secret_basic,
an ID token signed with its own key (iss, aud, sub, nonce, exp, CIS2-shaped roles), the
launch's `patient` in the token response, and Patient reads only with its access token.
The user is taken as already signed in at the EHR (as in a real EHR launch).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from joserfc import jwt
from joserfc.jwk import RSAKey


@dataclass
class Ehr:
    """The EHR's registrations and what it has issued."""

    client_id: str
    client_secret: str
    redirect_uri: str
    user: dict[str, Any]
    patients: dict[str, dict[str, Any]]
    key: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "ehr-1"})
    )
    base: str = ""
    launches: dict[str, str] = field(default_factory=dict)  # launch value -> Patient id
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> Patient id
    refused: list[str] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return self.base + "/auth"

    @property
    def fhir_base(self) -> str:
        return self.base + "/fhir"

    def launch_for(self, patient_id: str) -> str:
        value = secrets.token_urlsafe(16)
        self.launches[value] = patient_id
        return value

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False)]}


def _handler(ehr: Ehr) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refuse(self, reason: str, status: int = 400) -> None:
            ehr.refused.append(reason)
            self._json(status, {"error": "invalid_request", "error_description": reason})

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/fhir/.well-known/smart-configuration":
                self._json(200, {
                    "issuer": ehr.issuer,
                    "authorization_endpoint": ehr.base + "/auth/authorize",
                    "token_endpoint": ehr.base + "/auth/token",
                    "jwks_uri": ehr.base + "/auth/jwks",
                    "code_challenge_methods_supported": ["S256"],
                    "capabilities": ["launch-ehr", "client-confidential-symmetric",
                                     "context-ehr-patient", "sso-openid-connect"],
                })  # fmt: skip
            elif url.path == "/auth/jwks":
                self._json(200, ehr.jwks())
            elif url.path == "/auth/authorize":
                self._authorize(query)
            elif url.path.startswith("/fhir/Patient/"):
                patient_id = url.path.rsplit("/", 1)[-1]
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if ehr.tokens.get(token) != patient_id:
                    self._refuse("patient-not-in-token", 401)
                    return
                self._json(200, ehr.patients[patient_id], "application/fhir+json")
            else:
                self._refuse("no-such-route", 404)

        def _authorize(self, query: dict[str, str]) -> None:
            checks = {
                "client": query.get("client_id") == ehr.client_id,
                "redirect": query.get("redirect_uri") == ehr.redirect_uri,
                "launch": query.get("launch") in ehr.launches,
                "aud": query.get("aud") == ehr.fhir_base,
                "pkce": query.get("code_challenge_method") == "S256" and bool(query.get("code_challenge")),
                "scope": {"launch", "openid"} <= set(query.get("scope", "").split()),
                "response_type": query.get("response_type") == "code",
            }  # fmt: skip
            failed = [name for name, ok in checks.items() if not ok]
            if failed:
                self._refuse("authorize:" + ",".join(failed))
                return
            code = secrets.token_urlsafe(24)
            ehr.codes[code] = {
                "patient": ehr.launches.pop(query["launch"]),
                "challenge": query["code_challenge"],
                "nonce": query.get("nonce", ""),
                "redirect_uri": query["redirect_uri"],
            }
            target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()

        def do_POST(self) -> None:
            if urlparse(self.path).path != "/auth/token":
                self._refuse("no-such-route", 404)
                return
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            expected = base64.b64encode(f"{ehr.client_id}:{ehr.client_secret}".encode()).decode()
            if self.headers.get("Authorization", "") != f"Basic {expected}":
                self._refuse("client-authentication", 401)
                return
            issued = ehr.codes.pop(form.get("code", ""), None)  # a code is used once
            if issued is None or form.get("redirect_uri") != issued["redirect_uri"]:
                self._refuse("code")
                return
            verifier = form.get("code_verifier", "").encode()
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
            if challenge.decode() != issued["challenge"]:
                self._refuse("pkce")
                return
            access_token = secrets.token_urlsafe(24)
            ehr.tokens[access_token] = issued["patient"]
            now = int(time.time())
            id_token = jwt.encode(
                {"alg": "RS256", "kid": "ehr-1"},
                {"iss": ehr.issuer, "aud": ehr.client_id, "iat": now, "exp": now + 300,
                 "nonce": issued["nonce"], **ehr.user},
                ehr.key,
            )  # fmt: skip
            self._json(200, {
                "access_token": access_token, "token_type": "Bearer", "expires_in": 300,
                "scope": "launch openid fhirUser patient/Patient.read",
                "patient": issued["patient"], "id_token": id_token,
            })  # fmt: skip

    return Handler


@contextmanager
def smart_ehr(ehr: Ehr) -> Iterator[Ehr]:
    """Serve the EHR on a free localhost port while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ehr))
    ehr.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ehr
    finally:
        server.shutdown()
        server.server_close()
