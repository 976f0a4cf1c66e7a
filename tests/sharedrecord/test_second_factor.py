"""Local passwords with a second factor: TOTP (django-otp), required by production settings."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditAction, AuditEvent
from sharedrecord.secondfactor import totp_device_enrolling
from sharedrecord.sso.views import SIGN_IN

pytestmark = pytest.mark.django_db
PASSWORD = "persona-password-123"


def _code(device: TOTPDevice) -> str:
    return str(
        TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token()
    ).zfill(device.digits)


def _password(client: Client, user: Any) -> Any:
    return client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})


@override_settings(SIGN_IN_OTP_REQUIRED=True)
def test_a_right_password_alone_opens_nothing_when_a_code_is_required(
    client: Client, registered_gp: Any
) -> None:
    response = _password(client, registered_gp)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/code"
    assert client.get("/")["Location"].startswith("/accounts/login/")
    assert not AuditEvent.objects.filter(action=AuditAction.SIGN_IN).exists()


@override_settings(SIGN_IN_OTP_REQUIRED=True)
def test_a_user_without_an_authenticator_enrols_one_and_is_signed_in(
    client: Client, registered_gp: Any
) -> None:
    _password(client, registered_gp)
    page = client.get("/accounts/code")
    assert "Set up your authenticator app" in page.content.decode()
    device = TOTPDevice.objects.get(user=registered_gp, confirmed=False)
    assert (
        device.key.upper()[:4] in page.content.decode().upper()
        or "Setup key" in page.content.decode()
    )

    wrong = client.post(
        "/accounts/code", {"code": "000000" if _code(device) != "000000" else "111111"}
    )
    assert wrong.status_code == 400
    failed = AuditEvent.objects.filter(action=AuditAction.SIGN_IN_FAILED).latest("id")
    assert failed.detail == {"second_factor": "totp", "reason": "wrong-code"}

    device.refresh_from_db()
    device.throttling_failure_count = 0
    device.throttling_failure_timestamp = None
    device.save()
    right = client.post("/accounts/code", {"code": _code(device)})
    assert right.status_code == 302
    assert client.get("/").status_code == 200
    device.refresh_from_db()
    assert device.confirmed
    signed = AuditEvent.objects.filter(action=AuditAction.SIGN_IN).latest("id")
    assert signed.actor_id == registered_gp.public_id
    assert signed.detail == {"second_factor": "totp", "enrolled": True}
    assert client.session[SIGN_IN] == {"via": "password", "assurance_level": 2}


def test_an_enrolled_authenticator_is_asked_for_even_when_not_required(
    client: Client, registered_gp: Any
) -> None:
    device = totp_device_enrolling(registered_gp)
    device.confirmed = True
    device.save()
    assert _password(client, registered_gp)["Location"] == "/accounts/code"
    page = client.get("/accounts/code")
    assert "Enter your code" in page.content.decode()
    assert "Setup key" not in page.content.decode()
    assert client.post("/accounts/code", {"code": "12 34"}).status_code == 400
    device.refresh_from_db()
    device.throttling_failure_count = 0
    device.throttling_failure_timestamp = None
    device.save()
    assert client.post("/accounts/code", {"code": _code(device)}).status_code == 302
    assert AuditEvent.objects.filter(action=AuditAction.SIGN_IN).latest("id").detail == {
        "second_factor": "totp", "enrolled": False,
    }  # fmt: skip


def test_without_the_requirement_or_a_device_a_password_signs_in_at_level_one(
    client: Client, registered_gp: Any
) -> None:
    assert _password(client, registered_gp)["Location"] == "/"
    assert client.session[SIGN_IN] == {"via": "password", "assurance_level": 1}


def test_the_code_page_without_a_right_password_goes_back_to_sign_in(client: Client) -> None:
    assert client.get("/accounts/code")["Location"] == "/accounts/login/"
    assert client.post("/accounts/code", {"code": "123456"})["Location"] == "/accounts/login/"


@override_settings(SIGN_IN_PASSWORDS=False)
def test_passwords_can_be_turned_off(client: Client, registered_gp: Any) -> None:
    assert "Password" not in client.get("/accounts/login/").content.decode()
    assert _password(client, registered_gp).status_code == 403
    assert client.get("/").status_code == 302
