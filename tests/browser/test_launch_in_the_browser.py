"""Opening the record from the clinician's own system, in chromium: a signed launch."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from joserfc import jwt
from joserfc.jwk import RSAKey
from playwright.sync_api import Page, expect

from sharedrecord.models import Patient
from tests.browser.conftest import serious_accessibility_violations
from tests.factories import fed_person, partner
from tests.smart_ehr import Ehr, smart_ehr

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ISSUER = "https://gp-system.example.test"
KEY = RSAKey.generate_key(2048, parameters={"kid": "gp-1"})


def _launch_form(page: Page, action: str, token: str) -> None:
    """What the clinician's system does: post the signed token to /launch."""
    page.set_content(
        f'<form method="post" action="{action}"><input type="hidden" name="launch" '
        f'value="{token}"><button type="submit">Open shared care record</button></form>'
    )
    page.get_by_role("button", name="Open shared care record").click()


def _token(base: str, patient: Patient, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER, "aud": f"{base}/launch", "sub": "clinician-88", "org": "ZAC01",
        "role": "S8000:G8000:R8000", "person_roleid": "888001",
        "nhs_number": patient.nhs_number, "jti": uuid.uuid4().hex, "iat": now, "exp": now + 120,
        "given_name": "Lena", "family_name": "Launch", **overrides,
    }  # fmt: skip
    return jwt.encode({"alg": "RS256", "kid": "gp-1"}, claims, KEY)


@pytest.fixture
def registered(tmp_path: Path, db: None) -> Patient:
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps({"keys": [KEY.as_dict(private=False)]}))
    call_command(
        "launch_system_register", name="Borough Hospital EPR", issuer=ISSUER, jwks_file=str(keys)
    )
    partner("ZAC01")
    return fed_person("launch-browser")


def test_a_signed_launch_opens_the_persons_summary_from_the_clinicians_system(
    live_server: Any, page: Page, registered: Patient
) -> None:
    _launch_form(page, f"{live_server.url}/launch", _token(live_server.url, registered))
    expect(page.get_by_role("heading", name="Summary", exact=True)).to_be_visible()
    expect(page.get_by_text("Opened from Borough Hospital EPR")).to_be_visible()
    expect(page.get_by_text("Lena Launch, Clinical practitioner (doctor)")).to_be_visible()
    assert page.url == f"{live_server.url}/record/{registered.public_id}/"
    assert serious_accessibility_violations(page) == []


def test_a_replayed_launch_shows_a_refusal_and_nothing_of_the_person(
    live_server: Any, page: Page, registered: Patient
) -> None:
    token = _token(live_server.url, registered)
    _launch_form(page, f"{live_server.url}/launch", token)
    expect(page.get_by_role("heading", name="Summary", exact=True)).to_be_visible()
    page.context.clear_cookies()
    _launch_form(page, f"{live_server.url}/launch", token)
    expect(
        page.get_by_role("heading", name="The shared care record could not be opened")
    ).to_be_visible()
    expect(page.get_by_text("This launch has already been used")).to_be_visible()
    assert registered.family_name.upper() not in page.content()


def test_a_smart_ehr_launch_opens_the_persons_summary(
    live_server: Any, page: Page, tmp_path: Path, db: None
) -> None:
    partner("ZAC01")
    person = fed_person("smart-browser")
    user = {
        "sub": "ehr-user-5", "given_name": "Sam", "family_name": "Smart", "acr": "AAL3_ANY",
        "nhsid_nrbac_roles": [
            {"person_roleid": "555009", "org_code": "ZAC01", "role_code": "S8000:G8000:R8001"}
        ],
    }  # fmt: skip
    ehr = Ehr(
        client_id="shared-care-record", client_secret="an-ehr-secret-for-the-browser",
        redirect_uri=f"{live_server.url}/smart/callback", user=user,
        patients={"p9": {"resourceType": "Patient", "id": "p9", "identifier": [
            {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": person.nhs_number}]}},
    )  # fmt: skip
    with smart_ehr(ehr):
        secret = tmp_path / "secret"
        secret.write_text(ehr.client_secret)
        call_command(
            "launch_system_register", name="Borough Hospital EHR", issuer=ehr.issuer,
            jwks_url=ehr.base + "/auth/jwks", smart_fhir_base=ehr.fhir_base,
            client_id=ehr.client_id, client_secret_file=str(secret),
        )  # fmt: skip
        query = urlencode({"iss": ehr.fhir_base, "launch": ehr.launch_for("p9")})
        page.goto(f"{live_server.url}/smart/launch?{query}")
        expect(page.get_by_role("heading", name="Summary", exact=True)).to_be_visible()
        expect(page.get_by_text("Opened from Borough Hospital EHR")).to_be_visible()
        expect(page.get_by_text("Sam Smart, Nurse")).to_be_visible()
    assert page.url == f"{live_server.url}/record/{person.public_id}/"
    assert ehr.refused == []
