"""SMART App Launch (EHR launch) into the record, against a real EHR server (tests/smart_ehr.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import pytest
import requests
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from joserfc.jwk import RSAKey

from audit.models import AuditAction, AuditEvent
from sharedrecord.models import AccessBasis, Patient
from tests.factories import fed_person, main_html, partner
from tests.smart_ehr import Ehr, smart_ehr

pytestmark = pytest.mark.django_db
SECRET = "an-ehr-client-secret-for-tests"
CIS2_USER = {
    "sub": "ehr-user-9",
    "given_name": "Sam",
    "family_name": "Smart",
    "acr": "AAL3_ANY",
    "nhsid_nrbac_roles": [
        {"person_roleid": "999001", "org_code": "ZAC01", "role_code": "S8000:G8000:R8000"}
    ],
}


def _ehr(patient: Patient, redirect_uri: str, **user: Any) -> Ehr:
    patients: dict[str, dict[str, Any]] = {
        "pat-1": {
            "resourceType": "Patient",
            "id": "pat-1",
            "identifier": [
                {"system": "https://example.test/mrn", "value": "MRN-1"},
                {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": patient.nhs_number},
            ],
        },
        "pat-2": {"resourceType": "Patient", "id": "pat-2", "identifier": []},
    }
    return Ehr(
        client_id="shared-care-record",
        client_secret=SECRET,
        redirect_uri=redirect_uri,
        user={**CIS2_USER, **user},
        patients=patients,
    )


def _register(ehr: Ehr, tmp_path: Path, jwks_url: str = "") -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    call_command(
        "launch_system_register", name="Borough Hospital EHR", issuer=ehr.issuer,
        jwks_url=jwks_url or ehr.base + "/auth/jwks", smart_fhir_base=ehr.fhir_base,
        client_id=ehr.client_id, client_secret_file=str(secret),
    )  # fmt: skip


@pytest.fixture
def person(db: None) -> Patient:
    partner("ZAC01")
    cache.clear()
    return fed_person("smart")


@pytest.fixture
def ehr(person: Patient, tmp_path: Path) -> Iterator[Ehr]:
    with smart_ehr(_ehr(person, "http://testserver/smart/callback")) as running:
        _register(running, tmp_path)
        yield running


def _launch(client: Client, ehr: Ehr, patient_id: str = "pat-1") -> Any:
    """The EHR sends the browser to /smart/launch; follow it there and back."""
    query = urlencode({"iss": ehr.fhir_base, "launch": ehr.launch_for(patient_id)})
    started = client.get(f"/smart/launch?{query}")
    assert started.status_code == 302, started.content[:300]
    authorized = requests.get(started["Location"], allow_redirects=False, timeout=5)
    assert authorized.status_code == 302, (authorized.text, ehr.refused)
    back = urlparse(authorized.headers["Location"])
    return client.get(f"{back.path}?{back.query}")


def _refusal(code: str) -> None:
    event = AuditEvent.objects.filter(action=AuditAction.SIGN_IN_FAILED).latest("id")
    assert (event.detail["via"], event.detail["reason"]) == ("launch", code)


def test_an_ehr_launch_opens_the_persons_summary(client: Client, person: Patient, ehr: Ehr) -> None:
    opened = _launch(client, ehr)
    assert opened.status_code == 302, opened.content[:500]
    assert opened["Location"] == f"/record/{person.public_id}/"
    summary = client.get(opened["Location"])
    assert "Opened from Borough Hospital EHR" in main_html(summary)
    assert (
        AccessBasis.objects.get(patient=person).reason_text == "Launched from Borough Hospital EHR"
    )
    signed = AuditEvent.objects.filter(action=AuditAction.SIGN_IN).latest("id")
    assert (signed.detail["via"], signed.actor_name, signed.actor_org_ods) == (
        "smart-launch", "ehr-user-9@999001", "ZAC01",
    )  # fmt: skip
    assert ehr.refused == []


def test_a_launch_from_an_unregistered_ehr_is_refused_before_anything_is_sent(
    client: Client, ehr: Ehr
) -> None:
    query = urlencode({"iss": "http://127.0.0.1:9/fhir", "launch": "x"})
    response = client.get(f"/smart/launch?{query}")
    assert response.status_code == 403
    _refusal("unknown-issuer")
    assert client.get("/smart/launch").status_code == 403


def test_a_callback_not_started_here_or_replayed_is_refused(client: Client, ehr: Ehr) -> None:
    assert client.get("/smart/callback?code=x&state=y").status_code == 403
    _refusal("state")
    assert _launch(client, ehr).status_code == 302
    other = Client()
    assert other.get("/smart/callback?code=x&state=y").status_code == 403


def test_an_id_token_not_signed_by_the_registered_keys_is_refused(
    client: Client, person: Patient, tmp_path: Path
) -> None:
    with smart_ehr(_ehr(person, "http://testserver/smart/callback")) as running:
        stranger = RSAKey.generate_key(2048, parameters={"kid": "ehr-1"})
        keys = tmp_path / "jwks.json"
        keys.write_text(
            '{"keys": [' + __import__("json").dumps(stranger.as_dict(private=False)) + "]}"
        )
        secret = tmp_path / "secret"
        secret.write_text(SECRET)
        call_command(
            "launch_system_register", name="Borough Hospital EHR", issuer=running.issuer,
            jwks_file=str(keys), smart_fhir_base=running.fhir_base,
            client_id=running.client_id, client_secret_file=str(secret),
        )  # fmt: skip
        assert _launch(client, running).status_code == 403
    _refusal("id-token-signature")
    assert not AccessBasis.objects.exists()


def test_a_patient_without_an_nhs_number_is_refused(client: Client, ehr: Ehr) -> None:
    assert _launch(client, ehr, "pat-2").status_code == 403
    _refusal("no-nhs-number")


def test_a_user_without_a_role_profile_is_refused(
    client: Client, person: Patient, tmp_path: Path
) -> None:
    with smart_ehr(
        _ehr(person, "http://testserver/smart/callback", nhsid_nrbac_roles=[])
    ) as running:
        _register(running, tmp_path)
        assert _launch(client, running).status_code == 403
    _refusal("no-role-profile")
