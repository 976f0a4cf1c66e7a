"""Signed context launch: a registered system opens one person's record, and nothing else."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from joserfc import jwt
from joserfc.jwk import RSAKey

from audit.models import AuditAction, AuditEvent
from sharedrecord.models import AccessBasis, LaunchSystem, Patient
from tests.factories import fed_person, main_html, make_optout, next_nhs_number, partner

pytestmark = pytest.mark.django_db
ISSUER = "https://gp-system.example.test"
AUDIENCE = "http://testserver/launch"
KEY = RSAKey.generate_key(2048, parameters={"kid": "gp-1"})


def _register(tmp_path: Path, **options: Any) -> LaunchSystem:
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps({"keys": [KEY.as_dict(private=False)]}))
    call_command(
        "launch_system_register", name="Borough GP System", issuer=ISSUER,
        jwks_file=str(keys), **options,
    )  # fmt: skip
    return LaunchSystem.objects.get(issuer=ISSUER)


def _token(number: str, key: Any = KEY, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": "clinician-77", "org": "ZAC01",
        "role": "S8000:G8000:R8000", "person_roleid": "777001", "nhs_number": number,
        "jti": uuid.uuid4().hex, "iat": now, "exp": now + 120,
        "given_name": "Lena", "family_name": "Launch",
    }  # fmt: skip
    claims.update(overrides)
    return jwt.encode(
        {"alg": "RS256", "kid": "gp-1"}, {k: v for k, v in claims.items() if v is not None}, key
    )


def _launch(client: Client, token: str) -> Any:
    return client.post("/launch", {"launch": token})


@pytest.fixture
def person(db: None) -> Patient:
    partner("ZAC01")
    return fed_person("launch")


def _refusal(client: Client, response: Any) -> str:
    assert response.status_code == 403
    assert client.get("/")["Location"].startswith("/accounts/login/")  # nobody signed in
    event = AuditEvent.objects.filter(action=AuditAction.SIGN_IN_FAILED).latest("id")
    assert event.detail["via"] == "launch"
    return str(event.detail["reason"])


def test_a_signed_launch_opens_the_persons_summary(
    client: Client, person: Patient, tmp_path: Path
) -> None:
    _register(tmp_path)
    opened = _launch(client, _token(person.nhs_number))
    assert opened.status_code == 302
    assert opened["Location"] == f"/record/{person.public_id}/"
    summary = client.get(opened["Location"])
    assert summary.status_code == 200
    assert "Opened from Borough GP System" in main_html(summary)
    basis = AccessBasis.objects.get(patient=person)
    assert (basis.kind, basis.reason_text) == ("direct-care", "Launched from Borough GP System")
    recorded = AuditEvent.objects.filter(action=AuditAction.ACCESS_BASIS).latest("id")
    assert recorded.detail["launched_from"] == "Borough GP System"
    signed = AuditEvent.objects.filter(action=AuditAction.SIGN_IN).latest("id")
    assert signed.detail["via"] == "launch"
    assert signed.detail["system"] == "Borough GP System"
    assert (signed.actor_name, signed.actor_org_ods, signed.actor_role) == (
        "clinician-77@777001", "ZAC01", "clinical-practitioner",
    )  # fmt: skip
    assert AuditEvent.objects.filter(
        action=AuditAction.RECORD_VIEW, patient_id=person.public_id
    ).exists()


def test_a_tampered_launch_is_refused_and_audited(
    client: Client, person: Patient, tmp_path: Path
) -> None:
    _register(tmp_path)
    other = next_nhs_number()
    header, _payload, signature = _token(person.nhs_number).split(".")
    _, forged, _ = _token(other).split(".")
    assert _refusal(client, _launch(client, f"{header}.{forged}.{signature}")) == "signature"
    stranger = RSAKey.generate_key(2048, parameters={"kid": "gp-1"})
    assert _refusal(client, _launch(client, _token(person.nhs_number, key=stranger))) == "signature"
    assert not AccessBasis.objects.exists()


def test_an_expired_launch_is_refused(client: Client, person: Patient, tmp_path: Path) -> None:
    _register(tmp_path)
    past = int(time.time()) - 400
    token = _token(person.nhs_number, iat=past - 60, exp=past)
    assert _refusal(client, _launch(client, token)) == "expired"


def test_a_launch_valid_for_more_than_five_minutes_is_refused(
    client: Client, person: Patient, tmp_path: Path
) -> None:
    _register(tmp_path)
    now = int(time.time())
    token = _token(person.nhs_number, iat=now, exp=now + 301)
    assert _refusal(client, _launch(client, token)) == "lifetime"


def test_a_replayed_launch_is_refused(client: Client, person: Patient, tmp_path: Path) -> None:
    _register(tmp_path)
    token = _token(person.nhs_number)
    assert _launch(client, token).status_code == 302
    again = Client()
    assert _refusal(again, _launch(again, token)) == "replayed"


def test_a_launch_for_another_audience_is_refused(
    client: Client, person: Patient, tmp_path: Path
) -> None:
    _register(tmp_path)
    token = _token(person.nhs_number, aud="https://another-service.example.test/launch")
    assert _refusal(client, _launch(client, token)) == "audience"


def test_a_launch_from_an_unknown_issuer_is_refused(
    client: Client, person: Patient, tmp_path: Path
) -> None:
    _register(tmp_path)
    token = _token(person.nhs_number, iss="https://unregistered.example.test")
    assert _refusal(client, _launch(client, token)) == "unknown-issuer"
    assert _refusal(client, _launch(client, "not-a-token")) == "unknown-issuer"
    LaunchSystem.objects.update(active=False)
    assert _refusal(client, _launch(client, _token(person.nhs_number))) == "unknown-issuer"


def test_a_launch_missing_a_claim_is_refused(
    client: Client, person: Patient, tmp_path: Path
) -> None:
    _register(tmp_path)
    for missing in ("jti", "sub", "nhs_number", "org", "role"):
        token = _token(person.nhs_number, **{missing: None})
        assert _refusal(client, _launch(client, token)) == "claims", missing


def test_a_system_of_one_organisation_cannot_launch_for_another(
    client: Client, person: Patient, tmp_path: Path
) -> None:
    partner("Z81001")
    _register(tmp_path, org="Z81001")
    assert _refusal(client, _launch(client, _token(person.nhs_number))) == "organisation"


def test_a_launch_for_a_role_without_access_is_refused(
    client: Client, person: Patient, tmp_path: Path
) -> None:
    _register(tmp_path)
    response = _launch(client, _token(person.nhs_number, role="S8000:G8000:R9999"))
    assert response.status_code == 403
    assert "This role has no access" in response.content.decode()
    event = AuditEvent.objects.filter(action=AuditAction.SIGN_IN_FAILED).latest("id")
    assert (event.detail["via"], event.detail["reason"]) == ("launch", "unmapped-role")


def test_opted_out_and_unknown_people_look_alike(
    client: Client, person: Patient, tmp_path: Path
) -> None:
    _register(tmp_path)
    unknown = _launch(client, _token(next_nhs_number()))
    number = person.nhs_number
    make_optout(number, partner("Z81001"))
    opted_out = _launch(Client(), _token(number))
    assert unknown.status_code == opted_out.status_code == 404
    assert main_html(unknown) == main_html(opted_out)
    assert not AccessBasis.objects.exists()


def test_a_launched_session_opens_another_person_only_after_a_search(
    client: Client, person: Patient, tmp_path: Path
) -> None:
    _register(tmp_path)
    someone_else = fed_person("launch-other")
    assert _launch(client, _token(person.nhs_number)).status_code == 302
    pinned = client.get(f"/access/{someone_else.public_id}/")
    assert pinned.status_code == 403
    assert "This session was opened from Borough GP System for another person" in main_html(pinned)
    assert client.get(f"/record/{someone_else.public_id}/").status_code == 403
    found = client.post("/search", {"nhs_number": someone_else.nhs_number})
    assert "1 person found" in found.content.decode()
    basis_page = client.get(f"/access/{someone_else.public_id}/")
    assert basis_page.status_code == 200
    assert "Opened from" not in main_html(basis_page)


class _Keys(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_url() -> Iterator[str]:
    _Keys.body = json.dumps({"keys": [KEY.as_dict(private=False)]}).encode()
    server = HTTPServer(("127.0.0.1", 0), _Keys)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    server.shutdown()


def test_a_system_registered_by_jwks_url_launches(
    client: Client, person: Patient, jwks_url: str
) -> None:
    call_command(
        "launch_system_register", name="Borough GP System", issuer=ISSUER, jwks_url=jwks_url
    )
    assert _launch(client, _token(person.nhs_number))["Location"] == f"/record/{person.public_id}/"


def test_registering_refuses_private_keys_and_unreadable_files(tmp_path: Path) -> None:
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [KEY.as_dict(private=True)]}))
    with pytest.raises(CommandError, match="private key"):
        call_command("launch_system_register", name="X", issuer=ISSUER, jwks_file=str(private))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(CommandError, match="cannot be read"):
        call_command("launch_system_register", name="X", issuer=ISSUER, jwks_file=str(broken))
    with pytest.raises(CommandError, match="https"):
        call_command("launch_system_register", name="X", issuer=ISSUER, jwks_url="http://x.test/k")
    assert not LaunchSystem.objects.exists()


def test_registering_again_updates_the_system(tmp_path: Path) -> None:
    first = _register(tmp_path)
    second = _register(tmp_path)
    assert first.pk == second.pk
    assert AuditEvent.objects.filter(action=AuditAction.ADMIN_CHANGE).count() == 2
