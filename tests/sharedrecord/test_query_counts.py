"""Query-count guards on the read paths (STYLE.md section 13): an N+1 fails here.

Each bound is today's count for the module's fed person (every partner's feed).
A change that needs more queries raises the bound here, on purpose and reviewed;
one that reads a row per entry, per source or per event fails.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from audit.models import AuditEvent
from sharedrecord.models import Entry, Patient, RecordSection, User
from tests.factories import (
    NHS,
    PROGRAMME_ODS,
    client_for,
    confirm_basis,
    make_officer,
    shown_entries,
)
from tests.fhirapi import fhir_get, staff_token

pytestmark = pytest.mark.django_db

# Today's counts. The record pages read the basis, the policy, the entries and
# the sources once each, and write one audit event (with its chain head).
SUMMARY = 28
SECTION = {section: 22 for section in RecordSection.values}
DOCUMENT = 17
FHIR_PATIENT_READ = 11
FHIR_PATIENT_SEARCH = 9
FHIR_EVERYTHING = 17
FHIR_ENTRY_SEARCH = 17
GOVERNANCE_SEARCH = 14
GOVERNANCE_EVENT = 15


@pytest.fixture
def gp(client: Client, registered_gp: User, record: Patient) -> Client:
    client.force_login(registered_gp)
    assert confirm_basis(client, record).status_code == 302
    return client


@pytest.fixture
def token(registered_gp: User) -> str:
    return staff_token(Client(), registered_gp)


def test_the_record_summary(
    gp: Client, record: Patient, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(SUMMARY):
        response = gp.get(f"/record/{record.public_id}/")
    assert response.status_code == 200
    assert len(shown_entries(response)) >= 10  # the bound is for a full page


@pytest.mark.parametrize("section", RecordSection.values)
def test_each_record_section(
    gp: Client, record: Patient, section: str, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(SECTION[section]):
        response = gp.get(f"/record/{record.public_id}/{section}")
    assert response.status_code == 200


def test_a_document(gp: Client, record: Patient, django_assert_max_num_queries: Any) -> None:
    document = Entry.objects.get(patient=record, resource_type="DocumentReference")
    with django_assert_max_num_queries(DOCUMENT):
        response = gp.get(f"/record/{record.public_id}/documents/{document.public_id}")
    assert response.status_code == 200


def test_fhir_patient_read(
    client: Client, token: str, record: Patient, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(FHIR_PATIENT_READ):
        response = fhir_get(client, token, f"Patient/{record.public_id}")
    assert response.status_code == 200


def test_fhir_patient_search(
    client: Client, token: str, record: Patient, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(FHIR_PATIENT_SEARCH):
        response = fhir_get(client, token, "Patient", {"identifier": f"{NHS}|{record.nhs_number}"})
    assert response.status_code == 200
    assert response.json_body["total"] == 1


def test_fhir_everything(
    client: Client, token: str, record: Patient, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(FHIR_EVERYTHING):
        response = fhir_get(client, token, f"Patient/{record.public_id}/$everything")
    assert response.status_code == 200
    assert len(response.json_body["entry"]) >= 10


def test_fhir_entry_search(
    client: Client, token: str, record: Patient, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(FHIR_ENTRY_SEARCH):
        response = fhir_get(client, token, "Observation", {"patient": str(record.public_id)})
    assert response.status_code == 200
    assert len(response.json_body["entry"]) >= 3


def test_governance_search_and_event(
    gp: Client, record: Patient, settings: Any, django_assert_max_num_queries: Any
) -> None:
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME_ODS]
    gp.get(f"/record/{record.public_id}/")  # one more event about the person
    officer = client_for(make_officer())
    with django_assert_max_num_queries(GOVERNANCE_SEARCH):
        response = officer.get("/governance/events", {"nhs_number": record.nhs_number})
    assert response.status_code == 200
    assert response.content.decode().count('href="/governance/events/') >= 5
    event = AuditEvent.objects.filter(patient_id=record.public_id).order_by("-id")[0]
    with django_assert_max_num_queries(GOVERNANCE_EVENT):
        response = officer.get(f"/governance/events/{event.id}")
    assert response.status_code == 200
