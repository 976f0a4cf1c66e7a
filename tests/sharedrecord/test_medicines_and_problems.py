"""Medicines read as a GP reads them (repeat or acute, issued, stopped and why); problems
split into active and past, each with its dates."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from tests.factories import confirm_basis, main_html
from tests.sharedrecord.fidelity import probe, row, words

pytestmark = pytest.mark.django_db
UKCORE = "https://fhir.hl7.org.uk/StructureDefinition/"
COURSE = "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def _group(page: str, heading: str) -> str:
    found = re.search(rf">{heading} <span.*?</table>", page, re.S)
    assert found is not None, heading
    return found.group(0)


def test_medicines_say_repeat_or_acute_issued_and_stopped_with_date_and_reason(
    client: Client, registered_gp: Any
) -> None:
    sent = probe(
        {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
         "medicationCodeableConcept": {"text": "Atorvastatin 20mg tablets"},
         "authoredOn": "2026-01-10",
         "courseOfTherapyType": {"coding": [{"system": COURSE, "code": "continuous"}]},
         "dispenseRequest": {"quantity": {"value": 28, "unit": "tablet"}},
         "extension": [{"url": UKCORE + "Extension-UKCore-MedicationRepeatInformation",
                        "extension": [{"url": "numberOfPrescriptionsIssued", "valueUnsignedInt": 3},
                                      {"url": "authorisationExpiryDate",
                                       "valueDateTime": "2027-01-10T09:00:00Z"}]}]},
        {"resourceType": "MedicationStatement", "status": "active",
         "medicationCodeableConcept": {"text": "Metformin 500mg tablets"},
         "effectivePeriod": {"start": "2024-03-01"},
         "extension": [{"url": UKCORE + "Extension-UKCore-MedicationStatementLastIssueDate",
                        "valueDateTime": "2026-11-02T10:00:00Z"}]},
        {"resourceType": "MedicationStatement", "status": "stopped",
         "medicationCodeableConcept": {"text": "Ibuprofen 400mg tablets"},
         "effectivePeriod": {"start": "2025-01-05", "end": "2025-02-01"},
         "statusReason": [{"text": "Indigestion"}]},
        {"resourceType": "MedicationRequest", "status": "completed", "intent": "order",
         "medicationCodeableConcept": {"text": "Amoxicillin 500mg capsules"},
         "authoredOn": "2025-06-01",
         "courseOfTherapyType": {"coding": [{"system": COURSE, "code": "acute"}]}},
    )  # fmt: skip
    client.force_login(registered_gp)
    confirm_basis(client, sent.patient)
    page = main_html(client.get(f"/record/{sent.patient.public_id}/medications"))
    current, past = (
        _group(page, "Current medications"),
        _group(page, "Stopped and past medications"),
    )
    assert "Atorvastatin" in current
    assert "Metformin" in current
    assert "Ibuprofen" in past
    assert "Amoxicillin" in past
    assert "Ibuprofen" not in current
    assert "Atorvastatin" not in past
    statin = row(page, sent.entry("medicationrequest-1"))
    assert "Repeat or acute: Repeat" in statin
    assert "Issued: 3 times, authorised until 10 Jan 2027 09:00" in statin
    assert "Supply: 28 tablet" in statin
    assert "Last issued: 2 Nov 2026 10:00" in row(page, sent.entry("medicationstatement-2"))
    stopped = row(page, sent.entry("medicationstatement-3"))
    assert "Stopped" in stopped
    assert "Taken: 5 Jan 2025 to 1 Feb 2025" in stopped
    assert "Status reason: Indigestion" in stopped
    assert "Repeat or acute: Acute (short course)" in row(page, sent.entry("medicationrequest-4"))


def test_problems_are_split_into_active_and_past_with_resolved_dates(
    client: Client, registered_gp: Any
) -> None:
    sent = probe(
        {"resourceType": "Condition",
         "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
         "code": {"text": "Asthma"}, "onsetDateTime": "2001-04-01"},
        {"resourceType": "Condition",
         "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "resolved"}]},
         "code": {"text": "Fractured wrist"}, "onsetDateTime": "2019-02-03",
         "abatementDateTime": "2019-04-20"},
    )  # fmt: skip
    client.force_login(registered_gp)
    confirm_basis(client, sent.patient)
    page = main_html(client.get(f"/record/{sent.patient.public_id}/problems"))
    active, past = _group(page, "Active problems"), _group(page, "Past problems")
    assert "Asthma" in active
    assert "Fractured wrist" not in active
    assert "Fractured wrist" in past
    assert "Resolved: 20 Apr 2019" in words(past)
    assert "Onset" in words(page)  # the date column says what its dates mean
