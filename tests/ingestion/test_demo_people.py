"""Each demo person's GP record fits them, and every one is filed whole by the real pipeline."""

from __future__ import annotations

import pytest

from ingestion.demo import PEOPLE, gp_summary
from sharedrecord.models import Entry, Organisation, Patient
from tests.factories import feed, make_credential

pytestmark = pytest.mark.django_db


def _filed(person_index: int) -> Patient:
    person = PEOPLE[person_index]
    practice, _ = Organisation.objects.get_or_create(
        ods_code=person.gp_ods,
        defaults={"name": f"Practice {person.gp_ods}", "kind": "gp-practice",
                  "dsa_start": "2025-01-01"},
    )  # fmt: skip
    credential, _ = make_credential(practice)
    message = feed(credential, gp_summary(person))
    assert message.status == "done", message.issues
    assert message.counts["rejected"] == 0, message.issues
    return Patient.objects.get(nhs_number=person.nhs_number)


def _problems(patient: Patient) -> set[str]:
    return set(
        Entry.objects.filter(patient=patient, section="problems").values_list(
            "code_display", flat=True
        )
    )


def test_every_demo_person_has_a_record_that_fits_them() -> None:
    people = [_filed(i) for i in range(len(PEOPLE))]
    problems = [frozenset(_problems(p)) for p in people]
    assert len(set(problems)) == len(PEOPLE)  # no two people share the same problem list
    margaret, joseph, aisha, thomas, chloe, dennis = people
    assert "Type 2 diabetes mellitus" in _problems(margaret)  # the record the tests read
    assert "Chronic obstructive lung disease" in _problems(joseph)
    assert "Asthma" in _problems(aisha)
    assert "Heart failure" in _problems(thomas)
    assert "Atopic dermatitis" in _problems(chloe)
    assert "Osteoarthritis of knee" in _problems(dennis)
    # A ten-year-old has no diabetes test and no long-term adult medicines.
    assert not Entry.objects.filter(patient=chloe, code_display__startswith="HbA1c").exists()
    assert not Entry.objects.filter(
        patient=chloe,
        section="medications",
        resource__medicationCodeableConcept__text__icontains="metformin",
    ).exists()
    # The ninety-year-old's DNACPR decision is an active alert.
    assert Entry.objects.filter(
        patient=thomas, section="alerts", status="active", code="304253006"
    ).exists()
