"""PRSB Core Information Standard content: fed as FHIR, shown under its heading, governed.

The person's own phone and e-mail, language and interpreter, "about me", legal
information (advance decisions, lasting power of attorney) and end of life
(ReSPECT, DNACPR) each come from the resources presentation/prsb.py maps, in
plain English, and only to roles whose sections include them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from sharedrecord.models import Entry, Patient
from sharedrecord.presentation.prsb import PRSB_TABLE, prsb_markdown
from tests.factories import make_staff
from tests.sharedrecord.fidelity import block, page, probe, words
from tests.sharedrecord.test_plain_english import raw_codes_on

pytestmark = pytest.mark.django_db
SNOMED = "http://snomed.info/sct"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY = "http://terminology.hl7.org/CodeSystem/consentcategorycodes"
ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
NHS_COMMUNICATION = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSCommunication"
ROOT = Path(__file__).resolve().parents[2]


def _cc(system: str, code: str, display: str, text: str = "") -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        concept["text"] = text
    return concept


PATIENT = {
    "telecom": [
        {"system": "phone", "value": "07700 900461", "use": "mobile"},
        {"system": "email", "value": "margaret@example.org", "use": "home"},
        {"system": "phone", "value": "01632 960 999", "use": "old"},
    ],
    "communication": [
        {"language": _cc("urn:ietf:bcp:47", "en", "English")},
        {"language": _cc("urn:ietf:bcp:47", "pl", "Polish"), "preferred": True},
    ],
    "extension": [
        {
            "url": NHS_COMMUNICATION,
            "extension": [
                {"url": "language", "valueCodeableConcept": _cc("urn:ietf:bcp:47", "pl", "Polish")},
                {"url": "interpreterRequired", "valueBoolean": True},
            ],
        }
    ],
}
RESOURCES: list[dict[str, Any]] = [
    {
        "resourceType": "Consent",
        "status": "active",
        "scope": _cc(CONSENT_SCOPE, "adr", "Advanced Care Directive"),
        "category": [
            _cc(
                CONSENT_CATEGORY,
                "acd",
                "Advance Directive",
                text="Advance decision to refuse treatment",
            )
        ],
        "dateTime": "2026-03-02",
        "provision": {"type": "deny", "code": [{"text": "Mechanical ventilation"}]},
    },
    {
        "resourceType": "RelatedPerson",
        "active": True,
        "relationship": [{"text": "Lasting power of attorney for health and welfare"}],
        "name": [{"family": "Ellison", "given": ["Sarah"]}],
        "telecom": [{"system": "phone", "value": "07700 900123"}],
    },
    {
        "resourceType": "RelatedPerson",
        "active": True,
        "relationship": [_cc(ROLE, "NOK", "next of kin")],
        "name": [{"family": "Ellison", "given": ["Robert"]}],
    },
    {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "title": "About me",
        "description": "Likes to be called Peggy; hard of hearing on the left.",
    },
    {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "category": [_cc(SNOMED, "1108161000000109", "ReSPECT care plan")],
        "title": "ReSPECT: treatment escalation plan",
        "description": "Ward-based care; not for intensive care.",
    },
    {
        "resourceType": "Flag",
        "status": "active",
        "code": _cc(SNOMED, "304253006", "Not for resuscitation"),
    },
]


@pytest.fixture
def fed() -> Patient:
    return probe(*RESOURCES, patient=PATIENT).patient


def about(markup: str) -> str:
    return block(markup, "about")


def test_each_prsb_item_is_shown_under_its_heading_in_plain_english(
    client: Client, registered_gp: Any, fed: Patient
) -> None:
    summary = page(client, registered_gp, fed)
    said = about(summary)
    assert (
        "Person demographics Phone: 07700 900461 (mobile) E-mail: margaret@example.org (home)"
        in said
    )
    assert "01632 960 999" not in said  # an old number is not the person's number
    assert "Communication Preferred language: Polish Interpreter: Needed: book one" in said
    assert "About me About me: Likes to be called Peggy; hard of hearing on the left." in said
    assert "Legal information" in said
    assert "Advance decision to refuse treatment:" in said
    assert "Lasting power of attorney: Sarah Ellison" in said
    assert "End of life care" in said
    assert "DNACPR decision: Not for resuscitation" in said
    assert "ReSPECT plan: ReSPECT: treatment escalation plan" in said
    assert "Contacts Next of kin: Robert Ellison" in said
    # The headings come in the PRSB order, each once.
    order = ["Person demographics", "Communication", "About me", "Legal information",
             "End of life care", "Contacts"]  # fmt: skip
    assert [said.index(h) for h in order] == sorted(said.index(h) for h in order)
    assert raw_codes_on(summary) == []
    # Each line names the item it was read from.
    consent = Entry.objects.get(patient=fed, resource_type="Consent")
    assert f'data-entry="{consent.public_id}"' in summary


def test_the_banner_shows_dnacpr_and_respect_when_fed(
    client: Client, registered_gp: Any, fed: Patient
) -> None:
    page(client, registered_gp, fed)
    response = client.get(f"/record/{fed.public_id}/")
    banner = re.search(r'id="banner-flags">(.*?)</dd>', response.content.decode(), re.S)
    assert banner is not None
    assert words(banner.group(1)) == "DNACPR ReSPECT plan"


def test_the_care_plans_page_lists_a_consent_in_plain_english(
    client: Client, registered_gp: Any, fed: Patient
) -> None:
    plans = page(client, registered_gp, fed, "care-plans")
    said = words(plans)
    assert "Advance decision to refuse treatment" in said
    assert "Decision: Refuses" in said
    assert "About: Mechanical ventilation" in said
    assert raw_codes_on(plans) == []
    # Grouped under the PRSB headings, in their order, then the rest.
    headings = re.findall(r'<h2 class="nhsuk-heading-s sr-group-heading"[^>]*>(.*?)</h2>', plans)
    assert [words(h) for h in headings] == [
        "About me (1)", "Legal information (1)", "End of life care (1)", "Other care plans (0)",
    ]  # fmt: skip


def test_a_role_without_care_plans_sees_contact_and_communication_but_not_legal_or_about_me(
    client: Client, fed: Patient
) -> None:
    pharmacist = make_staff("ZPH01", "pharmacy", "pharmacist")
    said = about(page(client, pharmacist, fed, claim="Dispensing this person's medicines"))
    assert "Phone: 07700 900461" in said
    assert "Interpreter: Needed: book one" in said
    assert "Advance decision" not in said
    assert "About me" not in said
    assert "ReSPECT" not in said
    assert "DNACPR decision: Not for resuscitation" in said  # an alert: every role sees alerts


def test_a_social_worker_sees_legal_information_and_about_me(
    client: Client, social_worker: Any, fed: Patient
) -> None:
    said = about(page(client, social_worker, fed, claim="Allocated to this person's care"))
    assert "Lasting power of attorney: Sarah Ellison" in said
    assert "Advance decision to refuse treatment:" in said
    assert "About me: Likes to be called Peggy" in said


def test_a_record_with_none_of_it_says_so(client: Client, registered_gp: Any) -> None:
    bare = probe(
        {"resourceType": "Flag", "status": "active", "code": {"text": "Uses a wheelchair"}}
    )
    said = about(page(client, registered_gp, bare.patient))
    assert "Nothing shared on contact, communication, legal or end of life." in said


def test_the_documented_table_is_the_table_in_code() -> None:
    docs = (ROOT / "docs" / "architecture.md").read_text()
    assert prsb_markdown() in docs
    assert len(PRSB_TABLE) >= 10
