"""A person whose record every partner has fed, and the staff who read it."""

from __future__ import annotations

from typing import Any

import pytest

from sharedrecord.models import Patient, User
from tests.factories import fed_person, partner


@pytest.fixture(scope="module")
def module_record(module_transaction: None, django_db_blocker: Any) -> Patient:
    """The fed person, built once per module (five bundles through the whole pipeline)."""
    with django_db_blocker.unblock():
        return fed_person()


@pytest.fixture
def record(module_record: Patient, db: None) -> Patient:
    """The module's fed person, read afresh: what a test changes rolls back with the test."""
    return Patient.objects.get(pk=module_record.pk)


@pytest.fixture
def mental_health_clinician(db: None) -> User:
    """A psychiatrist at the trust whose feed holds the person's active mental health care."""
    return User.objects.create_user(
        "persona.mh2", password="persona-password-123", organisation=partner("ZMH02"),
        role="clinical-practitioner",
    )  # fmt: skip


@pytest.fixture
def social_worker(db: None) -> User:
    return User.objects.create_user(
        "persona.sw", password="persona-password-123", organisation=partner("ZSC01"),
        role="social-worker",
    )  # fmt: skip
