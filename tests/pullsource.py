"""A small FHIR R4 source on 127.0.0.1 for live pull tests and bench/pull.py.

It is a real HTTP server (threaded, on a free port) with an OAuth2 token
endpoint (client secret in HTTP Basic, or an RFC 7523 private-key JWT it
verifies with the public key), `Patient/_search` by NHS number and
`Patient/<id>/$everything`. `delay` makes it slow; `fail` makes it answer 500.
It records each request's path and headers so tests can check what was sent.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jwcrypto import jwk, jwt  # type: ignore[import-untyped]

from sharedrecord import fhirjson

NHS = "https://fhir.nhs.uk/Id/nhs-number"


@dataclass
class SourceState:
    """What the source holds and how it behaves; changed by tests between requests."""

    client_id: str = "pull-client"
    secret: str = "pull-secret-123"
    public_key: jwk.JWK | None = None  # set: only private-key JWT assertions are accepted
    people: dict[str, dict[str, Any]] = field(default_factory=dict)  # NHS number -> Patient
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # Patient id -> items
    delay: float = 0.0
    fail: bool = False
    duplicate: bool = False  # set: two people answer to the NHS number
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    tokens_issued: int = 0
    token_generation: int = 0  # moved on: tokens issued before are refused (401)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read state.requests instead

    def _record(self) -> SourceState:
        state = self.server.state
        state.requests.append((self.command, self.path, dict(self.headers.items())))
        if state.delay:
            time.sleep(state.delay)
        return state

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = fhirjson.dumps(body).encode()  # a Decimal as its own digits (5.10)
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length).decode()
        return {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}

    def _authorised(self, state: SourceState) -> bool:
        expected = f"Bearer token-{state.client_id}-{state.token_generation}"
        return self.headers.get("Authorization", "") == expected

    def do_POST(self) -> None:
        state = self._record()
        form = self._form()
        if state.fail:
            self._send(500, {"resourceType": "OperationOutcome"})
        elif self.path == "/token":
            self._token(state, form)
        elif self.path == "/fhir/Patient/_search":
            if not self._authorised(state):
                self._send(401, {"resourceType": "OperationOutcome"})
                return
            nhs_number = form.get("identifier", "").partition("|")[2]
            found = state.people.get(nhs_number)
            people = [found, {**found, "id": f"{found['id']}-twin"}] if found else []
            self._send(200, _searchset(people if state.duplicate else people[:1]))
        else:
            self._send(404, {"resourceType": "OperationOutcome"})

    def _token(self, state: SourceState, form: dict[str, str]) -> None:
        if state.public_key is not None:
            try:
                token = jwt.JWT(jwt=form.get("client_assertion", ""), key=state.public_key)
                claims = json.loads(token.claims)
                ok = claims["iss"] == state.client_id and claims["sub"] == state.client_id
            except Exception:  # any bad assertion is a refusal
                ok = False
        else:
            expected = base64.b64encode(f"{state.client_id}:{state.secret}".encode()).decode()
            ok = self.headers.get("Authorization", "") == f"Basic {expected}"
        if not ok or form.get("grant_type") != "client_credentials":
            self._send(401, {"error": "invalid_client"})
            return
        state.tokens_issued += 1
        self._send(
            200,
            {
                "access_token": f"token-{state.client_id}-{state.token_generation}",
                "expires_in": 600,
            },
        )

    def do_GET(self) -> None:
        state = self._record()
        path = urllib.parse.urlparse(self.path).path
        if state.fail:
            self._send(500, {"resourceType": "OperationOutcome"})
            return
        if not self._authorised(state):
            self._send(401, {"resourceType": "OperationOutcome"})
            return
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["fhir", "Patient"] and parts[3] == "$everything":
            items = state.records.get(parts[2], [])
            person = [p for p in state.people.values() if p["id"] == parts[2]]
            self._send(200, _searchset(person + items))
            return
        self._send(404, {"resourceType": "OperationOutcome"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: SourceState

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A caller that gave up on a slow answer closes the connection: expected, not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


class PullSourceServer:
    """The source, started on a free port; `url` is its base, `fhir` its FHIR base."""

    def __init__(self, state: SourceState | None = None) -> None:
        self.state = state or SourceState()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.state = self.state
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.fhir = f"{self.url}/fhir"
        self.token_url = f"{self.url}/token"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> PullSourceServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def person_resource(nhs_number: str, pid: str = "src-p1") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": NHS, "value": nhs_number}],
        "name": [{"family": "Livesource", "given": ["Pat"]}],
        "birthDate": "1970-01-01",
    }


def care_items(pid: str = "src-p1", *, prefix: str = "live") -> list[dict[str, Any]]:
    """An allergy, a problem, a restricted problem, an invalid item and another person's."""
    subject = {"reference": f"Patient/{pid}"}
    return [
        {
            "resourceType": "AllergyIntolerance",
            "id": f"{prefix}-allergy",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "91936005",
                        "display": "Allergy to penicillin",
                    }
                ]
            },
            "patient": subject,
            "recordedDate": "2026-01-05",
        },
        {
            "resourceType": "Condition",
            "id": f"{prefix}-asthma",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {
                "coding": [
                    {"system": "http://snomed.info/sct", "code": "195967001", "display": "Asthma"}
                ]
            },
            "subject": subject,
            "onsetDateTime": "2019-03-01",
        },
        {
            "resourceType": "Condition",
            "id": f"{prefix}-restricted",
            "meta": {
                "security": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "R",
                    }
                ]
            },
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "code": {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "35489007",
                        "display": "Depressive disorder",
                    }
                ]
            },
            "subject": subject,
        },
        {
            "resourceType": "Condition",
            "id": f"{prefix}-invalid",
            "subject": subject,
            "onsetDateTime": "not-a-date",
        },
        {
            "resourceType": "Condition",
            "id": f"{prefix}-someone-else",
            "code": {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "38341003",
                        "display": "Hypertension",
                    }
                ]
            },
            "subject": {"reference": "Patient/another-person"},
        },
    ]
