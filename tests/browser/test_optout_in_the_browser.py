"""A practice user records an opt-out in the browser; the record goes; a feed stores nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from guardian.shortcuts import assign_perm
from playwright.sync_api import Page, expect

from ingestion.models import MessageKind
from ingestion.processing import feed_message_process
from ingestion.receiving import feed_message_receive
from optout.models import OptOut, OptOutStatus
from sharedrecord.models import Organisation, Patient, StaffRole, User
from tests.browser.conftest import BASE_DIR, serious_accessibility_violations
from tests.factories import make_credential, next_nhs_number, small_bundle

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-browser-test-password"


def _feed(credential: Any, number: str, key: str) -> dict[str, int]:
    bundle = small_bundle(number, key=key)
    received = feed_message_receive(
        credential=credential, kind=MessageKind.FHIR_JSON, payload=json.dumps(bundle).encode(),
        idempotency_key=bundle["id"], entry_count=len(bundle["entry"]),
    )  # fmt: skip
    feed_message_process(message_id=received.message.pk)
    received.message.refresh_from_db()
    return dict(received.message.counts)


def test_a_practice_user_opts_a_patient_out_and_back_in(live_server: Any, page: Page) -> None:
    practice = Organisation.objects.create(
        ods_code="Z81001",
        name="Riverside Medical Practice",
        kind="gp-practice",
        dsa_start="2025-01-01",
    )
    gp = User.objects.create_user(
        "gp.browser", password=PASSWORD, organisation=practice, role=StaffRole.GP,
        first_name="Amira", last_name="Okafor",
    )  # fmt: skip
    assign_perm("sharedrecord.manage_optouts", gp, practice)
    credential, _ = make_credential(practice)
    number = next_nhs_number()
    assert _feed(credential, number, "before")["created"] == 2
    violations: dict[str, list[str]] = {}

    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # The design system's stylesheet really loads (the NHS blue header, not a bare page).
    header = page.locator("header.nhsuk-header")
    assert header.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(0, 94, 184)"
    violations["sign-in"] = serious_accessibility_violations(page)
    page.get_by_label("Username").fill("gp.browser")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.get_by_role("link", name="Opt-out registry").click()
    violations["registry"] = serious_accessibility_violations(page)
    page.get_by_role("link", name="Record an opt-out").click()
    violations["record"] = serious_accessibility_violations(page)
    page.get_by_label("NHS number").fill(f"{number[:3]} {number[3:6]} {number[6:]}")
    page.get_by_role("button", name="Continue").click()
    expect(
        page.get_by_text("Any shared care record for this person is deleted now")
    ).to_be_visible()
    violations["check"] = serious_accessibility_violations(page)
    page.get_by_role("button", name="Record opt-out").click()
    expect(page.get_by_text("Opt-out recorded")).to_be_visible()
    violations["entry"] = serious_accessibility_violations(page)
    page.screenshot(path=str(BASE_DIR / ".data" / "optout-recorded.png"), full_page=True)

    assert not Patient.objects.filter(nhs_number=number).exists()
    assert _feed(credential, number, "after") == {
        "created": 0, "updated": 0, "unchanged": 0, "deleted": 0, "rejected": 0, "parked": 0,
        "blocked": 2,
    }  # fmt: skip

    page.get_by_role("link", name="Record that they opt back in").click()
    page.get_by_role("button", name="Record opt-in").click()
    expect(page.get_by_text("Opt-in recorded.")).to_be_visible()
    assert OptOut.objects.get(nhs_number=number).status == OptOutStatus.OPTED_IN
    assert _feed(credential, number, "again")["created"] == 2

    assert violations == {name: [] for name in violations}
