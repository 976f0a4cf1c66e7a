"""A person whose record every partner has fed, and the staff who read it."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from django.test import Client

from ingestion.demo import (
    PEOPLE,
    acute_attendance,
    community_care,
    gp_summary,
    mental_health,
    social_care,
)
from sharedrecord.models import Organisation, Patient, User
from tests.factories import make_credential, next_nhs_number
from tests.optout.test_registry import feed

PARTNERS = {
    "Z81001": ("Riverside Medical Practice", "gp-practice"),
    "ZAC01": ("Borough General Hospital", "acute"),
    "ZCM01": ("Borough Community Health", "community"),
    "ZSC01": ("Borough Adult Social Care", "social-care"),
    # The trust that feeds the person's mental health care. The
    # unrelated_clinician persona works at another trust (ZMH01), with no
    # relationship: an organisation's own active care is a relationship.
    "ZMH02": ("Borough Mental Health", "mental-health"),
}


def partner(ods: str) -> Organisation:
    name, kind = PARTNERS[ods]
    organisation, _ = Organisation.objects.get_or_create(
        ods_code=ods, defaults={"name": name, "kind": kind, "dsa_start": "2025-01-01"}
    )
    return organisation


def fed_person(key: str = "rec") -> Patient:
    """A synthetic person with a GP summary, an A&E visit, community and social care, and
    a restricted mental health diagnosis: every partner's feed, through the real pipeline."""
    person = dataclasses.replace(PEOPLE[0], key=key, nhs_number_sent=next_nhs_number())
    for ods, bundle in (
        ("Z81001", gp_summary(person)),
        ("ZAC01", acute_attendance(person)),
        ("ZCM01", community_care(person)),
        ("ZSC01", social_care(person)),
        ("ZMH02", mental_health(person)),
    ):
        credential, _ = make_credential(partner(ods))
        message = feed(credential, bundle)
        assert message.status == "done", message.issues
    return Patient.objects.get(nhs_number=person.nhs_number)


@pytest.fixture
def record(db: None) -> Patient:
    return fed_person()


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


def main_html(response: Any) -> str:
    found = re.search(r"<main.*?</main>", response.content.decode(), flags=re.DOTALL)
    assert found is not None, response.content[:500]
    return found.group(0)


def shown_entries(response: Any) -> set[str]:
    return set(re.findall(r'data-entry="([0-9a-f-]{36})"', response.content.decode()))


def signed_in(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


def confirm_basis(client: Client, patient: Patient, claim: str = "") -> Any:
    return client.post(
        f"/access/{patient.public_id}/",
        {"confirm": "yes", "claimed_relationship": claim},
    )
