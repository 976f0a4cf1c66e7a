"""Deployment checks of our own settings (`manage.py check --deploy`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning


def passwords_need_a_second_factor(**kwargs: Any) -> list[CheckMessage]:
    """Warn when production lets staff in with a password alone."""
    if settings.DEBUG or not settings.SIGN_IN_PASSWORDS or settings.SIGN_IN_OTP_REQUIRED:
        return []
    return [
        Warning(
            "Staff can sign in with a password and no second factor.",
            hint=(
                "Set SIGN_IN_OTP_REQUIRED=true (a TOTP code after the password), or "
                "SIGN_IN_PASSWORDS=false to leave single sign-on only."
            ),
            id="sharedrecord.W001",
        )
    ]


def credentials_sealed_under_their_own_keys(**kwargs: Any) -> list[CheckMessage]:
    """Warn when sealed credentials hang on SECRET_KEY (rotating it would lose them)."""
    if settings.DEBUG or settings.SEALING_KEYS:
        return []
    return [
        Warning(
            "Credentials kept in the database are sealed under a key derived from SECRET_KEY.",
            hint=(
                "Set SEALING_KEYS_FILE (a key from `manage.py secrets_reseal --new-key`), then "
                "run `manage.py secrets_reseal`; rotating SECRET_KEY would otherwise make "
                "subscription and SMART client secrets unreadable."
            ),
            id="sharedrecord.W002",
        )
    ]
