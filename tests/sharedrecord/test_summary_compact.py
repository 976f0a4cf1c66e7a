"""The summary at a glance: each list its latest few, with its count and "see all N"; allergies
and alerts are never cut short (they are what to check before treating)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from sharedrecord.record import SUMMARY_CURRENT
from tests.sharedrecord.fidelity import block, page, probe, words

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


def test_a_visit_that_ends_the_day_it_starts_says_both_times_on_one_line(
    client: Client, registered_gp: Any
) -> None:
    visit = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB", "display": "ambulatory"},
        "type": [{"text": "Diabetes review"}],
        "period": {"start": "2026-03-05T10:00:00Z", "end": "2026-03-05T11:30:00Z"},
    }
    fed = probe(visit).patient
    said = block(page(client, registered_gp, fed), "encounters")
    assert "When 5 Mar 2026 10:00 to 11:30" in said
    assert "Ended" not in said  # said once, in the line's date
    # The section's table keeps the end as its own detail beside the start.
    section = page(client, registered_gp, fed, "encounters")
    assert "Ended: 5 Mar 2026 11:30" in words(section)


def test_other_care_plans_give_their_titles_and_dates_and_a_consent_its_decision(
    client: Client, registered_gp: Any
) -> None:
    plan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "title": "Falls prevention plan",
        "period": {"start": "2026-02-01"},
        "activity": [
            {"detail": {"code": {"text": "Strength and balance class"}, "status": "scheduled"}}
        ],
    }
    # Worded so "About the person" does not recognise it: it is listed with the other plans.
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"text": "Local form 7"},
        "category": [{"text": "Local form 7"}],
        "dateTime": "2026-03-02",
        "provision": {"type": "deny", "code": [{"text": "Blood transfusion"}]},
    }
    fed = probe(plan, consent).patient
    summary = page(client, registered_gp, fed)
    said = block(summary, "care-plans")
    assert "Falls prevention plan" in said
    assert "Period: from 1 Feb 2026" in said  # its date, said once
    assert "Strength and balance class" not in said  # a plan's content is on its page
    assert "Decision: Refuses" in said  # a consent says what it decides, wherever it is listed
    assert "Blood transfusion" in said
    markup = re.search(r'<section aria-labelledby="h-care-plans">.*?</section>', summary, re.S)
    assert markup is not None
    assert f'<a href="/record/{fed.public_id}/care-plans">Open care plans</a>' in markup.group(0)
    assert "Strength and balance class" in words(page(client, registered_gp, fed, "care-plans"))
