"""Security headers and safe sign-out: CSP on every page, no-store wherever personal data
may travel, Swagger UI from our own static files, and no sign-out by a plain link."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from ingestion.credentials import feed_credential_issue
from sharedrecord.models import Organisation, Patient, User
from sharedrecord.organisations import organisation_grant_optout_management
from tests.factories import confirm_basis, signed_in
from tests.fhirapi import fhir_get, staff_token

pytestmark = pytest.mark.django_db


def _policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in header.split(";")
        if part.strip()
    }


def test_every_page_refuses_inline_script_and_framing(
    client: Client, registered_gp, record: Patient
) -> None:
    signed_in(client, registered_gp)
    confirm_basis(client, record)
    for path in ("/", f"/record/{record.public_id}/", "/help/roles", "/admin/login/"):
        response = client.get(path)
        assert response.status_code in (200, 302), path
        policy = _policy(response)
        assert policy["script-src"] == "'self'", path
        assert "unsafe-inline" not in response["Content-Security-Policy"], path
        assert policy["frame-ancestors"] == "'none'", path
        assert policy["object-src"] == "'none'", path
    client.logout()
    assert _policy(client.get("/accounts/login/"))["default-src"] == "'self'"


def test_answers_that_may_carry_personal_data_are_never_stored(
    client: Client, registered_gp, record: Patient
) -> None:
    practice = registered_gp.organisation
    organisation_grant_optout_management(user=registered_gp, organisation=practice)
    officer = User.objects.create_user(
        "privacy.headers", password="persona-password-123", organisation=practice,
        role="privacy-officer",
    )  # fmt: skip
    token = staff_token(client, registered_gp)
    api = fhir_get(client, token, f"Patient/{record.public_id}")
    assert "no-store" in api["Cache-Control"]
    signed_in(client, registered_gp)
    for path in ("/optouts/", "/api/v1/optouts/", "/api/v1/optouts/export.csv"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "no-store" in response["Cache-Control"], path
    signed_in(client, officer)
    for path in ("/api/v1/audit/events", "/governance/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "no-store" in response["Cache-Control"], path
    _, feed_token = feed_credential_issue(
        organisation=Organisation.objects.get(ods_code="Z81001"), system="EPR"
    )
    client.logout()
    receipt = client.get(
        "/api/v1/feeds/receipts/00000000-0000-0000-0000-000000000001",
        HTTP_AUTHORIZATION=f"Bearer {feed_token}",
    )
    assert "no-store" in receipt["Cache-Control"]


def test_a_link_cannot_sign_anyone_out(registered_gp) -> None:
    browser = Client(enforce_csrf_checks=True)
    signed_in(browser, registered_gp)
    assert browser.get("/accounts/timed-out").status_code == 405
    home = browser.get("/").content.decode()
    assert browser.get("/").status_code == 200  # still signed in
    # Another site's form cannot post it either: it has no CSRF token.
    assert browser.post("/accounts/timed-out").status_code == 403
    assert browser.get("/").status_code == 200
    token = re.search(
        r'id="idle-timeout-form"[^>]*>\s*<input type="hidden" name="csrfmiddlewaretoken" value="([^"]+)"',
        home,
    )
    assert token is not None
    answer = browser.post("/accounts/timed-out", {"csrfmiddlewaretoken": token.group(1)})
    assert answer.status_code == 302
    assert answer["Location"].endswith("?timeout=1")
    assert browser.get("/").status_code == 302  # now signed out


def test_swagger_ui_comes_from_our_own_static_files(client: Client, registered_gp) -> None:
    signed_in(client, registered_gp)
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle." in html
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "cdnjs"):
        assert cdn not in html
    assert "<script>" not in html  # no inline script: the start-up script is a file
    script = client.get("/api/docs/", {"script": ""})
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
