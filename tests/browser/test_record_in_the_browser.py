"""A GP, an A&E doctor and a social worker read one person's record in chromium."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from sharedrecord.models import Patient, User
from tests.browser.conftest import BASE_DIR, serious_accessibility_violations
from tests.factories import fed_person, partner

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-browser-test-password"


def _staff(username: str, ods: str, role: str) -> User:
    return User.objects.create_user(
        username, password=PASSWORD, organisation=partner(ods), role=role,
        first_name="Test", last_name=username,
    )  # fmt: skip


def _sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Shared care record")).to_be_visible()


def _find_by_number(page: Page, patient: Patient) -> None:
    n = patient.nhs_number
    page.get_by_label("Find a person by NHS number").fill(f"{n[:3]} {n[3:6]} {n[6:]}")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_text("1 person found")).to_be_visible()


@pytest.fixture
def person(db: None) -> Patient:
    return fed_person("browser")


def test_a_gp_confirms_direct_care_and_reads_the_whole_record(
    live_server: Any, page: Page, person: Patient
) -> None:
    _staff("gp.browser", "Z81001", "gp")
    violations: dict[str, list[str]] = {}
    _sign_in(page, live_server.url, "gp.browser")
    violations["home"] = serious_accessibility_violations(page)
    _find_by_number(page, person)
    violations["result"] = serious_accessibility_violations(page)
    page.get_by_role("link", name="View record").click()
    expect(page.get_by_text("The person is registered with your practice.")).to_be_visible()
    violations["basis"] = serious_accessibility_violations(page)
    page.get_by_label("I am directly involved in this person's care").check()
    page.get_by_role("button", name="View record").click()

    expect(page.get_by_role("heading", name="Summary", exact=True)).to_be_visible()
    main = page.locator(".sr-record-main")  # the banner repeats allergies and alerts
    expect(main.get_by_text("Allergy to penicillin")).to_be_visible()
    expect(main.get_by_text("Metformin 500mg tablets")).to_be_visible()
    violations["summary"] = serious_accessibility_violations(page)
    page.get_by_text("Where this record comes from").click()
    expect(
        page.get_by_role("cell", name="Borough Adult Social Care Adult social care")
    ).to_be_visible()

    page.get_by_role("link", name="Test results", exact=True).click()
    expect(page.get_by_role("img", name="Trend of HbA1c level (IFCC standardised)")).to_be_visible()
    violations["results"] = serious_accessibility_violations(page)
    page.screenshot(path=str(BASE_DIR / ".data" / "record-results.png"), full_page=True)
    page.get_by_role("link", name="Problems and diagnoses").click()
    expect(page.get_by_text("Depressive disorder")).to_be_visible()
    page.get_by_role("link", name="Documents").click()
    page.get_by_role("link", name="Open document").click()
    expect(page.get_by_text("Troponin normal.")).to_be_visible()
    violations["document"] = serious_accessibility_violations(page)
    assert violations == {name: [] for name in violations}


def test_an_ae_doctor_on_a_tablet_uses_emergency_access(
    live_server: Any, page: Page, person: Patient
) -> None:
    _staff("ae.browser", "ZAC01", "clinical-practitioner")
    page.set_viewport_size({"width": 768, "height": 1024})
    _sign_in(page, live_server.url, "ae.browser")
    page.get_by_label("Family name").fill("Ellison")
    page.get_by_label("Day").fill("14")
    page.get_by_label("Month").fill("3")
    page.get_by_label("Year").fill("1941")
    page.get_by_role("button", name="Search by name").click()
    page.get_by_role("link", name="View record").click()
    expect(page.get_by_text("recorded an encounter")).to_be_visible()
    page.get_by_role("link", name="emergency access").click()
    page.get_by_role("button", name="Use emergency access").click()
    expect(page.get_by_text("Choose why consent cannot be obtained").first).to_be_visible()
    page.get_by_label("Emergency treatment").check()
    page.get_by_label("Explain the emergency").fill("Brought in unconscious, no one to ask")
    page.get_by_role("button", name="Use emergency access").click()

    expect(page.get_by_text("You are viewing this record under emergency access")).to_be_visible()
    violations = serious_accessibility_violations(page)
    # On a tablet the parts of the record are a closed menu above the content.
    page.get_by_text("Parts of the record", exact=True).click()
    page.get_by_role("link", name="Problems and diagnoses").click()
    expect(page.get_by_text("Depressive disorder")).to_be_visible()
    expect(page.get_by_text("Sensitive", exact=True)).to_be_visible()
    # Nothing overflows sideways at tablet width.
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    page.screenshot(path=str(BASE_DIR / ".data" / "record-break-glass-tablet.png"), full_page=True)
    assert violations == []


def test_a_social_worker_sees_care_and_is_told_what_is_not_shown(
    live_server: Any, page: Page, person: Patient
) -> None:
    _staff("sw.browser", "ZSC01", "social-worker")
    _sign_in(page, live_server.url, "sw.browser")
    _find_by_number(page, person)
    page.get_by_role("link", name="View record").click()
    # The council's own active care package is a relationship the feeds show: no need to
    # describe one (and nothing for the privacy officer to review).
    expect(page.get_by_text("holds an active care plan or care package")).to_be_visible()
    expect(page.get_by_label("Describe your role in this person's care")).to_have_count(0)
    page.get_by_label("I am directly involved in this person's care").check()
    page.get_by_role("button", name="View record").click()
    main = page.locator(".sr-record-main")  # the banner repeats the alerts
    expect(main.get_by_text("Home care package")).to_be_visible()
    expect(main.get_by_text("Lives alone")).to_be_visible()
    expect(page.get_by_role("link", name="Test results", exact=True)).to_have_count(0)
    expect(page.get_by_text("Not part of what your role sees")).to_contain_text("Test results")
    assert "HbA1c" not in page.content()
    assert serious_accessibility_violations(page) == []


def test_the_idle_warning_offers_to_stay_and_then_signs_out(
    live_server: Any, page: Page, settings
) -> None:
    settings.SESSION_COOKIE_AGE = 8
    settings.SESSION_IDLE_WARNING_SECONDS = 6
    _staff("gp.idle", "Z81001", "gp")
    _sign_in(page, live_server.url, "gp.idle")
    warning = page.get_by_role("alertdialog")
    expect(warning).to_be_visible(timeout=5000)
    expect(warning).to_contain_text("You will be signed out soon")
    page.get_by_role("button", name="Stay signed in").click()
    expect(warning).to_be_hidden()
    expect(page.get_by_text("You were signed out because you had not done anything")).to_be_visible(
        timeout=15000
    )
    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
