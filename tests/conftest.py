"""Shared fixtures. Everything here talks to real PostgreSQL, Redis and Celery."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.test.utils import override_settings

from sharedrecord.celery import app as celery_app
from tests.services import CeleryWorker, database_url

# Each test session consumes its own queue, so a worker from `make run` on the
# same Redis never takes a test's task (and the reverse).
TEST_QUEUE = f"test-{uuid.uuid4().hex[:12]}"
# Subscriptions' receivers in the tests are plain http on localhost (production: https only);
# set before the settings load, so the worker process inherits it too.
os.environ.setdefault("NOTIFY_ALLOW_HTTP", "true")
celery_app.conf.task_default_queue = TEST_QUEUE

# ------------------------------------------------------------------ the slow step (STYLE.md 13)
# `make test` runs `-m "not slow"` and `make test-slow` runs `-m slow`, so every test is in
# exactly one of the two. Marking by kind, folder and fixture (not by hand) means a new
# end-to-end or browser test lands in the slow step without anyone remembering to mark it.
SLOW_MARKERS = {"e2e", "browser", "fuzz", "faults"}
SLOW_FOLDERS = {"browser", "fuzz", "faults", "federation"}
# A real worker process or a real HTTP server: seconds of start-up and committed data.
SLOW_FIXTURES = {"celery_worker", "live_server"}
TESTS_DIR = Path(__file__).resolve().parent


def is_slow(item: pytest.Item) -> bool:
    """Whether a collected test belongs to the slow step."""
    if any(item.get_closest_marker(name) for name in SLOW_MARKERS | {"slow"}):
        return True
    folder = item.path.resolve().relative_to(TESTS_DIR).parts[0]
    if folder in SLOW_FOLDERS:
        return True
    return bool(SLOW_FIXTURES & set(getattr(item, "fixturenames", ())))


# tryfirst: the marks must be on before pytest's own `-m` selection runs.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if is_slow(item) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing() -> Iterator[None]:
    """Hash the tests' passwords with a cheap Argon2 (tests/hashers.py); same algorithm."""
    hashers = [
        "tests.hashers.FastArgon2PasswordHasher" if name.endswith(".Argon2PasswordHasher") else name
        for name in settings.PASSWORD_HASHERS
    ]
    assert hashers != settings.PASSWORD_HASHERS, "the settings no longer use Argon2 first"
    with override_settings(PASSWORD_HASHERS=hashers):
        yield


@pytest.fixture(scope="session", autouse=True)
def _passwords_without_a_second_factor() -> Iterator[None]:
    """Sign the tests' users in with a password alone; tests of the second factor turn it on.

    Production settings require a TOTP code after the password (SIGN_IN_OTP_REQUIRED
    defaults to on without DEBUG; tests/sharedrecord/test_second_factor.py holds it).
    """
    with override_settings(SIGN_IN_OTP_REQUIRED=False):
        yield


# ------------------------------------------------------------------ data built once per module
@pytest.fixture(scope="module")
def module_transaction(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """One transaction around a whole module, rolled back when the module ends.

    Module-scoped fixtures that depend on this build their data once, inside it;
    each test then runs in its own savepoint (pytest-django's `db`), so what a
    test changes is undone before the next, and what the module built is undone
    before the next module: nothing is committed, so the append-only audit
    trail never carries one module's events into another's assertions. Only for
    modules whose tests are not transactional (a flush or a live server would
    not see, or would wipe, the uncommitted data).
    """
    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        # As under Django's TestCase: a durable block in the code under test nests in it.
        atomic._from_testcase = True  # type: ignore[attr-defined]
        atomic.__enter__()
    try:
        yield
    finally:
        with django_db_blocker.unblock():
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: Any, django_db_blocker: Any) -> Iterator[CeleryWorker]:
    """A real Celery worker process on the test database; tests using it need committed data."""
    worker = CeleryWorker(database=database_url(settings.DATABASES["default"]), queue=TEST_QUEUE)
    worker.start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


# ------------------------------------------------------------------ personas (STYLE.md 13)
# The access rules are tested with all three. The relationship rules that set
# them apart arrive with the record pages; today they differ by organisation.


def _persona(username: str, ods: str, kind: str, role: str) -> Any:
    from sharedrecord.models import Organisation, User

    organisation, _ = Organisation.objects.get_or_create(
        ods_code=ods, defaults={"name": f"Persona {ods}", "kind": kind, "dsa_start": "2025-01-01"}
    )
    return User.objects.create_user(
        username, password="persona-password-123", organisation=organisation, role=role
    )


@pytest.fixture
def registered_gp(db: None) -> Any:
    """A GP at the practice the demo patients are registered with."""
    return _persona("persona.gp", "Z81001", "gp-practice", "gp")


@pytest.fixture
def treating_clinician(db: None) -> Any:
    """An A&E doctor at the acute trust that treated the patient."""
    return _persona("persona.ae", "ZAC01", "acute", "clinical-practitioner")


@pytest.fixture
def unrelated_clinician(db: None) -> Any:
    """A clinician at a mental health trust with no relationship to the patient."""
    return _persona("persona.mh", "ZMH01", "mental-health", "clinical-practitioner")
