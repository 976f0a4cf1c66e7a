"""The summary at a glance: each list its latest few, with its count and "see all N"; allergies
and alerts are never cut short (they are what to check before treating)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from sharedrecord.record import SUMMARY_CURRENT
from tests.sharedrecord.fidelity import block, page, probe

pytestmark = pytest.mark.django_db
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"


def _medicine(n: int) -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": {"text": f"Medicine number {n:02d}"},
        "effectiveDateTime": f"2026-01-{n:02d}",
    }


def _allergy(n: int) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]},
        "code": {"text": f"Allergy number {n:02d}"},
        "recordedDate": f"2025-02-{n:02d}",
    }


def test_a_long_list_shows_its_latest_few_its_count_and_a_link_to_all(
    client: Client, registered_gp: Any
) -> None:
    many = SUMMARY_CURRENT + 3
    fed = probe(*(_medicine(n) for n in range(1, many + 1))).patient
    summary = page(client, registered_gp, fed)
    said = block(summary, "medications")
    assert said.startswith(f"Current medications ({many})")
    shown = [n for n in range(1, many + 1) if f"Medicine number {n:02d}" in said]
    assert shown == list(range(many - SUMMARY_CURRENT + 1, many + 1))  # the latest few
    assert f"See all {many} current medications" in said
    assert f'href="/record/{fed.public_id}/medications"' in summary


def test_allergies_are_never_cut_short(client: Client, registered_gp: Any) -> None:
    many = SUMMARY_CURRENT + 3
    fed = probe(*(_allergy(n) for n in range(1, many + 1))).patient
    said = block(page(client, registered_gp, fed), "allergies")
    assert all(f"Allergy number {n:02d}" in said for n in range(1, many + 1))
    assert "See all" not in said
