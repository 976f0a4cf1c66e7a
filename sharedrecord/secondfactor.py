"""A second factor for local passwords: TOTP devices (django-otp), enrolled and checked.

A password opens nothing by itself when the user has a confirmed authenticator or the
deployment requires one (SIGN_IN_OTP_REQUIRED): the sign-in then waits for a code.
A user without one enrols: an unconfirmed device's key is shown once per attempt and
becomes theirs when a code from it is entered. django-otp throttles wrong codes.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from sharedrecord.models import User

DEVICE_NAME = "Authenticator app"


def second_factor_needed(user: User) -> bool:
    """Whether a password sign-in must also give a code (a device, or the setting)."""
    confirmed = TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    return confirmed or settings.SIGN_IN_OTP_REQUIRED


def totp_device_confirmed(user: User) -> TOTPDevice | None:
    """The user's authenticator, once enrolled."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()


@transaction.atomic
def totp_device_enrolling(user: User) -> TOTPDevice:
    """The device being enrolled (made once; the same key until confirmed)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)
    return device


def totp_verify(*, device: TOTPDevice, code: str) -> bool:
    """Whether the code is right now (throttled by django-otp); enrolment confirms the device."""
    code = code.replace(" ", "").strip()
    if not (code.isascii() and code.isdigit() and len(code) == device.digits):
        return False
    allowed, _ = device.verify_is_allowed()
    if not allowed or not device.verify_token(code):
        return False
    if not device.confirmed:
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    return True
