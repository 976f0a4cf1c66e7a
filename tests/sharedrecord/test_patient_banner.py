"""The patient banner (NHS pattern) on every record and document page, and what it says."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent
from sharedrecord.models import Patient, RecordSection
from tests.factories import banner_entries, client_for, confirm_basis, shown_entries
from tests.sharedrecord.fidelity import probe, words

pytestmark = pytest.mark.django_db
SNOMED = "http://snomed.info/sct"


def banner(response: Any) -> str:
    page = response.content.decode()
    found = re.search(r'<div class="sr-patient-banner".*?(?=<p class="sr-print-only")', page, re.S)
    assert found is not None, page[:300]
    return words(found.group(0))


def _age(born: datetime.date) -> int:
    today = datetime.date.today()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def test_the_banner_is_on_every_record_and_document_page_in_the_nhs_pattern(
    client: Client, registered_gp: Any, record: Patient
) -> None:
    client.force_login(registered_gp)
    confirm_basis(client, record)
    base = f"/record/{record.public_id}/"
    urls = [base, *(f"{base}{s}" for s in RecordSection.values)]
    documents = client.get(f"{base}documents")
    urls += [f"{base}documents/{e}" for e in shown_entries(documents)]
    assert len(urls) == len(RecordSection.values) + 2
    born = f"Born 14 Mar 1941 ({_age(datetime.date(1941, 3, 14))} years)"
    for url in urls:
        said = banner(client.get(url))
        assert said.startswith("ELLISON, Margaret "), url
        assert born in said, url
        number = record.nhs_number
        assert f"NHS number {number[:3]} {number[3:6]} {number[6:]}" in said, url
        assert "GP practice Riverside Medical Practice, 01632 960 101" in said, url
        assert "Allergies Allergy to penicillin" in said, url
        assert "Alert Lives alone" in said, url
        assert "Printed by" not in said  # the print line is outside the banner


def test_the_banner_alerts_are_audited_on_a_section_that_does_not_list_them(
    client: Client, registered_gp: Any, record: Patient
) -> None:
    client.force_login(registered_gp)
    confirm_basis(client, record)
    response = client.get(f"/record/{record.public_id}/results")
    named = banner_entries(response)
    assert len(named) == 1
    event = AuditEvent.objects.filter(action=AuditAction.SECTION_VIEW).latest("id")
    assert set(named) <= set(event.detail["entries"])


def test_the_banner_tells_apart_no_known_allergies_and_nothing_recorded(
    registered_gp: Any,
) -> None:
    nkda = probe(
        {"resourceType": "AllergyIntolerance", "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
            "code": "active"}]},
         "code": {"coding": [{"system": SNOMED, "code": "409137002",
                              "display": "No known drug allergy"}]}},
    )  # fmt: skip
    nothing = probe()
    client = client_for(registered_gp)
    for sent, expected in ((nkda, "Allergies No known drug allergies"),
                           (nothing, "Allergies Not recorded: ask the person")):  # fmt: skip
        confirm_basis(client, sent.patient)
        assert expected in banner(client.get(f"/record/{sent.patient.public_id}/problems"))


def test_dnacpr_end_of_life_and_safeguarding_alerts_stand_out_and_ended_ones_do_not(
    registered_gp: Any,
) -> None:
    sent = probe(
        {"resourceType": "Flag", "status": "active",
         "code": {"coding": [{"system": SNOMED, "code": "304253006",
                              "display": "Not for resuscitation"}]},
         "period": {"start": "2026-01-01"}},
        {"resourceType": "CarePlan", "status": "active", "intent": "plan",
         "title": "End of life care plan", "period": {"start": "2026-02-01"}},
        {"resourceType": "Flag", "status": "active", "code": {"text": "Safeguarding concern"},
         "period": {"start": "2025-01-01", "end": "2025-06-01"}},
    )  # fmt: skip
    client = client_for(registered_gp)
    confirm_basis(client, sent.patient)
    for url in ("", "results"):
        said = banner(client.get(f"/record/{sent.patient.public_id}/{url}"))
        assert "Important DNACPR End of life care" in said
        assert "Safeguarding" not in said  # its period ended: not current


def test_a_printed_page_says_who_printed_it_when_and_that_it_is_confidential(
    client: Client, registered_gp: Any, record: Patient
) -> None:
    client.force_login(registered_gp)
    confirm_basis(client, record)
    page = client.get(f"/record/{record.public_id}/").content.decode()
    line = re.search(r'<p class="sr-print-only" id="printed-by">(.*?)</p>', page, re.S)
    assert line is not None
    said = words(line.group(1))
    assert said.startswith("Confidential. Printed by persona.gp, Riverside Medical Practice, on ")
