"""A GP sees what changed for the practice's patients, filters it, and opens a record from it."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from sharedrecord.models import Organisation, StaffRole, User
from sharedrecord.notifications.dispatch import notification_events_dispatch
from tests.browser.conftest import BASE_DIR, serious_accessibility_violations
from tests.factories import feed, make_credential, next_nhs_number, partner
from tests.notifications.feeds import builder, every_kind_bundle

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-browser-test-password"


def test_a_gp_sees_what_changed_and_opens_the_record(live_server: Any, page: Page) -> None:
    practice = partner("Z81001")
    User.objects.create_user(
        "gp.notices", password=PASSWORD, organisation=Organisation.objects.get(pk=practice.pk),
        role=StaffRole.GP, first_name="Amira", last_name="Okafor",
    )  # fmt: skip
    number = next_nhs_number()
    feed(make_credential(practice)[0], builder(number, "Z81001", "g1").bundle())
    feed(make_credential(partner("ZAC01"))[0], every_kind_bundle(number, "ZAC01"))
    notification_events_dispatch()
    violations: dict[str, list[str]] = {}

    page.goto(f"{live_server.url}/")
    page.get_by_label("Username").fill("gp.notices")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Your patients: what changed").click()
    expect(
        page.get_by_role("heading", name="Your patients: what changed since you last looked")
    ).to_be_visible()
    rows = page.locator("#notifications tbody tr")
    expect(rows).to_have_count(6)
    expect(page.locator("#notifications").get_by_text("Abnormal")).to_be_visible()
    violations["list"] = serious_accessibility_violations(page)
    page.screenshot(path=str(BASE_DIR / ".data" / "notifications-list.png"), full_page=True)

    page.get_by_label("What changed").select_option("admission")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Admitted to hospital")

    page.get_by_label("Only what is new since I last looked").check()
    page.get_by_label("What changed").select_option("")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("Nothing to show since you last looked")).to_be_visible()

    page.get_by_label("Only what is new since I last looked").uncheck()
    page.get_by_role("button", name="Filter").click()
    rows.first.get_by_role("link").click()
    # The usual access basis comes first, as from a search.
    expect(page).to_have_url(f"{live_server.url}/access/{_patient_id(number)}/")
    assert violations == {"list": []}


def _patient_id(number: str) -> str:
    from sharedrecord.models import Patient

    return str(Patient.objects.get(nhs_number=number).public_id)
