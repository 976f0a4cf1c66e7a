"""Template context every page needs."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from sharedrecord.sessions import session_seconds_left


def session_timeout(request: HttpRequest) -> dict[str, int]:
    """The idle timeout the page's script counts down (the server enforces it)."""
    session = getattr(request, "session", None)
    return {
        "idle_seconds": (
            session_seconds_left(session=session)
            if session is not None
            else settings.SESSION_COOKIE_AGE
        ),
        "idle_warning_seconds": min(
            settings.SESSION_IDLE_WARNING_SECONDS, settings.SESSION_COOKIE_AGE
        ),
    }


def launch(request: HttpRequest) -> dict[str, object]:
    """The launched session's system and person, for the "Opened from" banner."""
    session = getattr(request, "session", None)
    return {"launch": session.get("launch") if session is not None else None}
