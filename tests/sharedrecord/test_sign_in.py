"""Sign-in: audited, locked after repeated failures, never tells who has an account."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditAction, AuditEvent
from sharedrecord.sessions import SESSION_RENEWED
from tests.factories import main_html

pytestmark = pytest.mark.django_db
PASSWORD = "persona-password-123"


def _sign_in(client: Client, username: str, password: str):
    return client.post("/accounts/login/", {"username": username, "password": password})


def _without_csrf(html: str) -> str:
    return (
        re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)
        .replace("persona.gp", "NAME")
        .replace("nobody.here", "NAME")
    )


def test_a_good_sign_in_and_a_sign_out_are_audited(client: Client, registered_gp) -> None:
    response = _sign_in(client, "persona.gp", PASSWORD)
    assert response.status_code == 302
    (event,) = AuditEvent.objects.filter(action=AuditAction.SIGN_IN)
    assert (event.actor_id, event.actor_role_code, event.actor_org_ods) == (
        registered_gp.public_id, "R0260", "Z81001",
    )  # fmt: skip
    assert event.client_address == "127.0.0.1"
    client.post("/accounts/logout/")
    assert AuditEvent.objects.filter(
        action=AuditAction.SIGN_OUT, actor_id=registered_gp.public_id
    ).exists()
    assert client.get("/").status_code == 302


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(
    client: Client, registered_gp
) -> None:
    wrong = _sign_in(client, "persona.gp", "not-the-password")
    unknown = _sign_in(client, "nobody.here", "not-the-password")
    assert wrong.status_code == unknown.status_code == 200
    assert "Your username or password is not right" in main_html(wrong)
    assert _without_csrf(main_html(wrong)) == _without_csrf(main_html(unknown))
    failed = AuditEvent.objects.filter(action=AuditAction.SIGN_IN_FAILED).order_by("id")
    assert [(e.actor_type, e.actor_name, e.outcome) for e in failed] == [
        ("anonymous", "persona.gp", "denied"),
        ("anonymous", "nobody.here", "denied"),
    ]


def test_repeated_failures_lock_the_username_alike_whether_or_not_it_exists(
    client: Client, registered_gp, settings
) -> None:
    for username in ("persona.gp", "nobody.here"):
        for _ in range(settings.AXES_FAILURE_LIMIT):
            _sign_in(client, username, "guessing-wrong")
    locked = _sign_in(client, "persona.gp", PASSWORD)  # even the right password now
    phantom = _sign_in(client, "nobody.here", PASSWORD)
    assert locked.status_code == phantom.status_code == 429
    assert "too many unsuccessful attempts" in main_html(locked)
    assert _without_csrf(main_html(locked)) == _without_csrf(main_html(phantom))
    assert client.get("/").status_code == 302  # not signed in
    last = AuditEvent.objects.filter(action=AuditAction.SIGN_IN_FAILED).order_by("-id").first()
    assert last is not None
    assert last.detail == {"locked_out": True}


def test_a_lockout_is_per_username_and_address(client: Client, registered_gp, settings) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(client, "persona.gp", "guessing-wrong")
    elsewhere = Client(REMOTE_ADDR="10.9.8.7")
    assert _sign_in(elsewhere, "persona.gp", PASSWORD).status_code == 302


def test_passwords_are_stored_with_argon2(registered_gp) -> None:
    assert registered_gp.password.startswith("argon2$")


def test_the_deployed_settings_hash_with_argon2_at_its_full_cost() -> None:
    # The tests hash with a cheap Argon2 (tests/hashers.py); the settings a
    # deployment loads must still put Django's own, at its full cost, first.
    from django.contrib.auth.hashers import Argon2PasswordHasher
    from django.utils.module_loading import import_string

    from sharedrecord import settings as deployed

    first = import_string(deployed.PASSWORD_HASHERS[0])
    assert first is Argon2PasswordHasher
    encoded = first().encode("synthetic-password", "salt" * 4)
    assert encoded.startswith("argon2$argon2id$v=19$m=102400,t=2,p=8$"), encoded[:40]


def test_the_session_ends_after_the_idle_timeout_and_every_page_says_when(
    client: Client, registered_gp, settings
) -> None:
    assert settings.SESSION_COOKIE_AGE == 15 * 60
    _sign_in(client, "persona.gp", PASSWORD)
    home = client.get("/")
    # Counted from the sign-in, which may have been in the second before.
    assert 895 <= _idle_seconds(home) <= 900
    assert 'data-warning-seconds="120"' in home.content.decode()
    assert client.session.get_expiry_age() == 900
    status = client.get("/accounts/session")
    assert status.json() == {"idle_seconds": 900}

    timed_out = client.post("/accounts/timed-out")
    assert timed_out["Location"] == "/accounts/login/?timeout=1"
    assert client.get("/").status_code == 302
    event = AuditEvent.objects.filter(action=AuditAction.SIGN_OUT).get()
    assert event.detail == {"idle_timeout": True}
    page = client.get("/accounts/login/?timeout=1")
    assert "You were signed out because you had not done anything" in main_html(page)


def _idle_seconds(page: Any) -> int:
    """The idle countdown a page's script starts from."""
    found = re.search(r'data-idle-seconds="(\d+)"', page.content.decode())
    assert found, "the page says nothing of the idle timeout"
    return int(found.group(1))


def _session_row(client: Client) -> Session:
    return Session.objects.get(session_key=client.session.session_key)


def _as_if_used_seconds_ago(client: Client, seconds: int) -> None:
    """Move the session's last renewal (and its expiry with it) back in time."""
    session = client.session
    session[SESSION_RENEWED] = session[SESSION_RENEWED] - seconds
    session.save()
    Session.objects.filter(session_key=session.session_key).update(
        expire_date=timezone.now() + datetime.timedelta(seconds=900 - seconds)
    )


def test_a_page_renews_the_session_at_most_once_a_minute_and_says_what_is_left(
    client: Client, registered_gp, settings
) -> None:
    _sign_in(client, "persona.gp", PASSWORD)
    client.get("/")
    with CaptureQueriesContext(connection) as queries:
        again = client.get("/")
    assert [q for q in queries.captured_queries if "UPDATE" in q["sql"]] == []
    assert 895 <= _idle_seconds(again) <= 900  # counted from the sign-in, not renewed

    _as_if_used_seconds_ago(client, 50)  # renewed 50 s ago: not yet renewed again
    before = _session_row(client).expire_date
    page = client.get("/")
    assert _session_row(client).expire_date == before
    # The page counts down what the server will allow, never more.
    assert 840 <= _idle_seconds(page) <= 850

    _as_if_used_seconds_ago(client, 30)  # 80 s since the last renewal: this one renews
    page = client.get("/")
    assert _session_row(client).expire_date - timezone.now() > datetime.timedelta(seconds=890)
    assert 899 <= _idle_seconds(page) <= 900  # renewed by this very request

    _as_if_used_seconds_ago(client, 50)
    assert client.get("/accounts/session").json() == {"idle_seconds": 900}  # "stay signed in"
    renewed = _session_row(client).expire_date - timezone.now()
    assert renewed > datetime.timedelta(seconds=890)
