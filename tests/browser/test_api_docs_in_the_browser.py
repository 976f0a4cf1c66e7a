"""The API documentation renders in chromium from our own static files, under our CSP."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from sharedrecord.models import Organisation, User

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-browser-test-password"


def test_swagger_ui_renders_every_area_without_leaving_the_platform(
    live_server: Any, page: Page
) -> None:
    programme = Organisation.objects.create(
        ods_code="ZSR01", name="Programme", kind="other", dsa_start="2025-01-01"
    )
    User.objects.create_user(
        "docs.reader", password=PASSWORD, organisation=programme, role="privacy-officer"
    )
    outside: list[str] = []
    page.on(
        "request",
        lambda request: (
            outside.append(request.url)
            if not request.url.startswith(live_server.url) and not request.url.startswith("data:")
            else None
        ),
    )
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("docs.reader")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.get_by_role("heading", name="Shared care record API")).to_be_visible()
    expect(page.locator(".opblock").first).to_be_visible()
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    for area in ("/api/v1/feeds/", "/api/v1/optouts/", "/api/v1/audit/"):
        assert any(p.startswith(area) for p in paths), area
    assert [url for url in outside if "assets.nhs.uk/fonts" not in url] == []
