"""A signed-in session lasts SESSION_COOKIE_AGE from its last use, renewed at most once a minute.

Django can renew a session on every request (SESSION_SAVE_EVERY_REQUEST), but
that is a row update and a durable commit on every page a clinician opens.
Here a request renews the session only when SESSION_RENEW_SECONDS (at most a
quarter of the timeout) have passed since its last renewal, so the server may
end an idle session up to that long before SESSION_COOKIE_AGE after its very
last request; every page says how long the server will really allow (the idle
warning counts down from it), and "Stay signed in" always renews.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest, HttpResponse

SESSION_RENEWED = "renewed_at"  # when the session's expiry was last moved on (Unix seconds)


def session_renew(*, session: SessionBase, force: bool = False) -> None:
    """Move the session's expiry on, if it is due (or `force`): SessionMiddleware saves it.

    Due after SESSION_RENEW_SECONDS, or a quarter of SESSION_COOKIE_AGE if that is
    shorter (a short timeout must still be renewed by use).
    """
    at = int(time.time())
    every = min(settings.SESSION_RENEW_SECONDS, settings.SESSION_COOKIE_AGE // 4)
    renewed = session.get(SESSION_RENEWED)
    if force or not isinstance(renewed, int) or at - renewed >= every:
        session[SESSION_RENEWED] = at  # modified: saved with a new expiry


def session_seconds_left(*, session: SessionBase) -> int:
    """How long the server keeps this session if nothing more is done: the idle countdown."""
    age = int(settings.SESSION_COOKIE_AGE)
    renewed = session.get(SESSION_RENEWED)
    if not isinstance(renewed, int):
        return age
    return min(age, max(0, age - (int(time.time()) - renewed)))


class SessionRenewalMiddleware:
    """Renews a session that holds anything (a sign-in), before the view reads how long it lasts."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        if session.keys():  # loads it; an unknown or expired key holds nothing
            session_renew(session=session)
        return self.get_response(request)
