"""A GP opens a record whose sources are asked live (issue 25), in chromium: shown, named, accessible."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from ingestion.pulling import pull_tokens_forget
from sharedrecord.models import Organisation, Patient, User
from sharedrecord.pullsources import pull_source_register
from tests.browser.conftest import serious_accessibility_violations
from tests.factories import make_patient, partner
from tests.pullsource import PullSourceServer, SourceState, care_items, person_resource

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-browser-test-password"
SECRET = "BROWSER_PULL_SECRET"


@pytest.fixture
def sources(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Patient, PullSourceServer, PullSourceServer]]:
    monkeypatch.setenv(SECRET, "pull-secret-123")
    pull_tokens_forget()
    person = make_patient(registered_gp_ods="Z81001")
    good = SourceState()
    good.people[person.nhs_number] = person_resource(person.nhs_number)
    good.records["src-p1"] = care_items()
    with PullSourceServer(good) as answering, PullSourceServer(SourceState(fail=True)) as failing:
        for ods, name, server in (("ZLB01", "Hillside Hospital", answering),
                                  ("ZLB02", "Valley Hospice", failing)):  # fmt: skip
            organisation = Organisation.objects.create(
                ods_code=ods, name=name, kind="acute", dsa_start=datetime.date(2025, 1, 1)
            )
            pull_source_register(
                organisation=organisation, base_url=server.fhir, token_url=server.token_url,
                client_id="pull-client", secret_name=SECRET, timeout_seconds=Decimal(2),
            )  # fmt: skip
        yield person, answering, failing
    pull_tokens_forget()


def test_a_gp_sees_live_items_and_which_system_did_not_answer(
    live_server: Any, page: Page, sources: tuple[Patient, PullSourceServer, PullSourceServer]
) -> None:
    person, _, _ = sources
    User.objects.create_user(
        "gp.live", password=PASSWORD, organisation=partner("Z81001"), role="gp",
        first_name="Test", last_name="Live",
    )  # fmt: skip
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("gp.live")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{live_server.url}/access/{person.public_id}/")
    page.get_by_label("I am directly involved in this person's care").check()
    page.get_by_role("button", name="View record").click()

    expect(page.get_by_role("heading", name="Collected live from other systems")).to_be_visible()
    expect(page.get_by_text("retrieved live at")).to_be_visible()
    expect(page.get_by_role("cell", name="Allergy to penicillin")).to_be_visible()
    expect(
        page.get_by_text("Valley Hospice system did not answer; its information is not shown.")
    ).to_be_visible()
    assert serious_accessibility_violations(page) == []
