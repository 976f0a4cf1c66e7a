"""Entries parked for each reason are decided on the workbench in the browser and reach the record."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from ingestion.models import MatchQueueItem
from sharedrecord.models import Entry, Organisation, Patient, StaffRole, User
from tests.browser.conftest import BASE_DIR, serious_accessibility_violations
from tests.factories import PARK_REASONS, make_credential, next_nhs_number, parking_feed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-browser-test-password"


def _sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Shared care record")).to_be_visible()


def test_an_officer_files_each_parked_case_and_a_clinician_sees_it_on_the_record(
    live_server: Any, page: Page, settings: Any
) -> None:
    settings.GOVERNANCE_ODS_CODES = ["ZSR01"]
    hospital = Organisation.objects.create(
        ods_code="ZAC01", name="Borough General Hospital", kind="acute", dsa_start="2025-01-01"
    )
    programme = Organisation.objects.create(
        ods_code="ZSR01", name="Programme", kind="other", dsa_start="2025-01-01"
    )
    User.objects.create_user(
        "dq.browser", password=PASSWORD, organisation=programme,
        role=StaffRole.DATA_QUALITY_OFFICER, first_name="Joan", last_name="Okeke",
    )  # fmt: skip
    User.objects.create_user(
        "doctor.browser", password=PASSWORD, organisation=hospital,
        role=StaffRole.CLINICAL_PRACTITIONER,
    )  # fmt: skip
    credential, _ = make_credential(hospital)
    number = next_nhs_number()
    findings = {reason: f"Parked finding {i}" for i, reason in enumerate(PARK_REASONS)}
    for i, (reason, text) in enumerate(findings.items()):
        parking_feed(credential, reason, key=f"br{i}", text=text, nhs_number=number)
    assert {i.reason for i in MatchQueueItem.objects.all()} == set(PARK_REASONS)
    violations: dict[str, list[str]] = {}

    _sign_in(page, live_server.url, "dq.browser")
    page.get_by_role("link", name="Data quality workbench").click()
    expect(page.locator("#waiting-count")).to_have_text("4")
    violations["workbench"] = serious_accessibility_violations(page)
    for reason in PARK_REASONS:
        label = str(MatchQueueItem.objects.filter(reason=reason)[0].get_reason_display())
        page.get_by_role("row").filter(has_text=label).get_by_role("link").click()
        expect(page.get_by_role("heading", name=f"Parked: {label}")).to_be_visible()
        # What was sent about the person, never the entries' content.
        expect(page.get_by_text(findings[reason])).to_have_count(0)
        if reason == "demographics-conflict":
            # The person the NHS number names is offered, with a score below certainty.
            violations["case"] = serious_accessibility_violations(page)
            page.screenshot(path=str(BASE_DIR / ".data" / "workbench-case.png"), full_page=True)
            page.locator("#candidates input[type=radio]").first.check()
        else:
            page.get_by_label("Or file to this NHS number").fill(number)
        page.get_by_label("Why this is the person").fill("Confirmed with the ward clerk by phone")
        page.get_by_role("button", name="File to this person").click()
        expect(page.get_by_text("Case decided: Filed to a person")).to_be_visible()
    expect(page.locator("#waiting-count")).to_have_text("0")
    assert set(MatchQueueItem.objects.values_list("state", flat=True)) == {"filed"}
    patient = Patient.objects.get(nhs_number=number)
    assert Entry.objects.filter(patient=patient, resource_type="Condition").count() == 5
    page.get_by_role("button", name="Sign out").click()

    _sign_in(page, live_server.url, "doctor.browser")
    page.get_by_label("Find a person by NHS number").fill(number)
    page.get_by_role("button", name="Search", exact=True).click()
    page.get_by_role("link", name="View record").click()
    page.get_by_label("Describe your role in this person's care").fill(
        "Treating the person on the ward today"
    )
    page.get_by_label("I am directly involved in this person's care").check()
    page.get_by_role("button", name="View record").click()
    page.get_by_role("link", name="Problems and diagnoses").click()
    for text in findings.values():
        expect(page.get_by_text(text, exact=True)).to_be_visible()
    assert violations == {name: [] for name in violations}
