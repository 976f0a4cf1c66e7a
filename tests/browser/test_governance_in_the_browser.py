"""A privacy officer reviews an emergency access and prints a subject access report in chromium."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import Page, expect

from audit.models import AccessReview, AuditAction, AuditEvent
from sharedrecord.models import Organisation, User
from tests.browser.conftest import BASE_DIR, serious_accessibility_violations
from tests.factories import fed_person, partner

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-browser-test-password"


def test_a_privacy_officer_reviews_break_glass_and_prints_a_subject_access_report(
    live_server: Any, page: Page, settings: Any
) -> None:
    settings.GOVERNANCE_ODS_CODES = ["ZSR01"]
    person = fed_person("governance")
    doctor = User.objects.create_user(
        "ae.glass", password=PASSWORD, organisation=partner("ZAC01"),
        role="clinical-practitioner", first_name="Daniel", last_name="Reyes",
    )  # fmt: skip
    client = Client()
    client.force_login(doctor)
    client.post(
        f"/access/{person.public_id}/emergency",
        {"reason_code": "OVRER", "reason_text": "Brought in unconscious, no one to ask"},
    )
    glass = AuditEvent.objects.get(actor_name="ae.glass", action=AuditAction.BREAK_GLASS)
    programme, _ = Organisation.objects.get_or_create(
        ods_code="ZSR01", defaults={"name": "Borough Shared Care Record Programme",
                                    "kind": "other"},
    )  # fmt: skip
    User.objects.create_user(
        "privacy.browser", password=PASSWORD, organisation=programme, role="privacy-officer"
    )

    violations: dict[str, list[str]] = {}
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("privacy.browser")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#unreviewed")).to_contain_text("to review")
    page.get_by_role("link", name="Governance").click()
    expect(page.get_by_text("You see the whole audit trail.")).to_be_visible()
    violations["home"] = serious_accessibility_violations(page)

    page.get_by_role("link", name="to review").click()
    violations["queue"] = serious_accessibility_violations(page)
    # Emergency access comes first in the queue, with a Review button.
    page.locator(f'a.sr-review-button[href="/governance/events/{glass.id}"]').click()
    expect(page.get_by_text("Emergency access (emergency treatment): Brought in")).to_be_visible()
    violations["event"] = serious_accessibility_violations(page)
    page.get_by_role("button", name="Save finding").click()
    expect(page.locator(".nhsuk-error-summary")).to_contain_text("Choose a finding")
    page.get_by_label("Justified", exact=True).check()
    page.get_by_label("Note").fill("Resus notes confirm the patient arrived unconscious")
    page.get_by_role("button", name="Save finding").click()
    expect(page.get_by_role("heading", name="Accesses to review")).to_be_visible()
    expect(page.get_by_text("Finding saved: Justified")).to_be_visible()
    violations["saved"] = serious_accessibility_violations(page)
    assert page.locator(f'a[href="/governance/events/{glass.id}"]').count() == 0
    (finding,) = AccessReview.objects.filter(event_id=glass.id)
    assert finding.outcome == "justified"

    page.goto(f"{live_server.url}/governance/")
    page.get_by_label("NHS number").first.fill(person.nhs_number)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_text("Emergency", exact=True).first).to_be_visible()
    violations["search"] = serious_accessibility_violations(page)

    page.goto(f"{live_server.url}/governance/subject-access?nhs_number={person.nhs_number}")
    expect(page.get_by_role("cell", name="Daniel Reyes").first).to_be_visible()
    expect(page.get_by_text("1 of them in an emergency without asking first")).to_be_visible()
    violations["report"] = serious_accessibility_violations(page)
    page.emulate_media(media="print")
    expect(page.locator("header.nhsuk-header")).to_be_hidden()
    expect(page.get_by_role("button", name="Print or save as PDF")).to_be_hidden()
    page.pdf(path=str(BASE_DIR / ".data" / "subject-access-report.pdf"))
    assert violations == {name: [] for name in violations}
