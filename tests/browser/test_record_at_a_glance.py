"""Each role reads a record at a glance in chromium, at desktop, tablet and phone widths.

Per role and page: the banner stays in view while the page scrolls, the first
clinical item starts on the first screen (1280x800 and 768x1024), no raw code
from the label table shows, charts have labelled axes, axe finds nothing serious,
and a screenshot is written to .data/screenshots/ (ignored by git) for review.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from sharedrecord.models import Patient, RecordSection, User
from tests.browser.conftest import BASE_DIR, serious_accessibility_violations
from tests.factories import day_shown, fed_person, partner
from tests.sharedrecord.test_plain_english import ISO_TIME, raw_codes_on

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-browser-test-password"
SHOTS = BASE_DIR / ".data" / "screenshots"
WIDTHS = {"desktop": (1280, 800), "tablet": (768, 1024), "phone": (375, 812)}
ROLES = {
    "gp": ("Z81001", "gp"),
    "ae-doctor": ("ZAC01", "clinical-practitioner"),
    "social-worker": ("ZSC01", "social-worker"),
}


def _sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Shared care record")).to_be_visible()


def _record_urls(page: Page, base: str, person: Patient) -> dict[str, str]:
    """The summary, every section the role may open, and every document it lists."""
    record = f"{base}/record/{person.public_id}/"
    urls = {"summary": record, "timeline": f"{record}timeline"}
    for section in RecordSection.values:
        response = page.goto(f"{record}{section}")
        if response is not None and response.status == 200:
            urls[section] = f"{record}{section}"
    if "documents" in urls:
        page.goto(urls["documents"])
        for i, link in enumerate(page.locator("#maincontent a", has_text="Open document").all()):
            urls[f"document-{i + 1}"] = base + str(link.get_attribute("href"))
    return urls


def _banner_in_view(page: Page) -> bool:
    return bool(
        page.evaluate(
            """() => { const b = document.getElementById('patient-banner').getBoundingClientRect();
                       return b.top >= 0 && b.bottom <= window.innerHeight && b.height > 0; }"""
        )
    )


@pytest.mark.parametrize("role", list(ROLES))
def test_each_role_reads_every_page_at_a_glance_at_three_widths(
    live_server: Any, page: Page, role: str
) -> None:
    person = fed_person(f"glance-{role}")
    ods, staff_role = ROLES[role]
    User.objects.create_user(
        f"{role}.glance", password=PASSWORD, organisation=partner(ods), role=staff_role,
        first_name="Test", last_name=role,
    )  # fmt: skip
    base = live_server.url
    page.set_viewport_size({"width": 1280, "height": 800})
    _sign_in(page, base, f"{role}.glance")
    page.goto(f"{base}/access/{person.public_id}/")
    page.get_by_label("I am directly involved in this person's care").check()
    if page.get_by_label("Describe your role in this person's care").count():
        page.get_by_label("Describe your role in this person's care").fill("On the ward today")
    page.get_by_role("button", name="View record").click()
    expect(page.locator("#patient-banner")).to_contain_text("ELLISON, Margaret")

    urls = _record_urls(page, base, person)
    assert "summary" in urls
    assert len(urls) >= 8, urls
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: dict[str, list[str]] = {}
    for name, url in urls.items():
        for width_name, (width, height) in WIDTHS.items():
            where = f"{name} at {width_name}"
            page.set_viewport_size({"width": width, "height": height})
            page.goto(url)
            found: list[str] = []
            main = page.locator("main").inner_html()
            found += [f"raw code {c}" for c in raw_codes_on(main)]
            found += [f"ISO time {t}" for t in ISO_TIME.findall(main)]
            if (wide := page.evaluate("document.documentElement.scrollWidth")) > width:
                found.append(f"scrolls sideways ({wide} px)")
            if width_name in ("desktop", "tablet") and page.locator("[data-entry]").count():
                top = page.locator("[data-entry]").first.bounding_box()
                if top is None or top["y"] > height:
                    found.append(f"first clinical item starts at {top}")
            page.mouse.wheel(0, 100_000)
            page.wait_for_timeout(50)
            if not _banner_in_view(page):
                found.append("banner scrolled away")
            page.evaluate("window.scrollTo(0, 0)")
            found += serious_accessibility_violations(page)
            page.screenshot(path=str(SHOTS / f"{role}-{name}-{width_name}.png"), full_page=True)
            if found:
                problems[where] = found
    assert problems == {}


def test_trend_charts_have_labelled_axes_dates_values_and_the_reference_band(
    live_server: Any, page: Page
) -> None:
    person = fed_person("glance-chart")
    User.objects.create_user(
        "gp.chart", password=PASSWORD, organisation=partner("Z81001"), role="gp"
    )
    page.set_viewport_size({"width": 1280, "height": 800})
    _sign_in(page, live_server.url, "gp.chart")
    page.goto(f"{live_server.url}/access/{person.public_id}/")
    page.get_by_label("I am directly involved in this person's care").check()
    page.get_by_role("button", name="View record").click()
    # The results page: the full chart, with axes, dates, values and the reference band.
    page.goto(f"{live_server.url}/record/{person.public_id}/results")
    chart = page.get_by_role("img", name="Trend of HbA1c level (IFCC standardised)")
    expect(chart).to_be_visible()
    labels = [t.strip() for t in chart.locator("text").all_text_contents()]
    assert "mmol/mol" in labels  # the y axis says its unit
    assert "Date taken" in labels  # the x axis says what it is
    assert {"20", "48"} <= set(labels)  # the reference range's ends are on the y axis
    assert {day_shown(400), day_shown(40)} <= set(labels)  # first and last dates
    assert {"58", "54", "49"} <= set(labels)  # each point's value
    expect(chart.locator("rect.sr-band title")).to_have_text("Reference range")
    # The summary: a small trend, no axes, read out in full (unit, each value and date),
    # inside its test's latest result (said once), with how many and a link to the full chart.
    page.goto(f"{live_server.url}/record/{person.public_id}/")
    spark = page.get_by_role("img", name="Trend of HbA1c level (IFCC standardised) (mmol/mol)")
    expect(spark).to_be_visible()
    said = str(spark.get_attribute("aria-label"))
    for value, day in (("58", day_shown(400)), ("49", day_shown(40))):
        assert f"{value} mmol/mol on {day}" in said, said
    figure = page.locator("figure.sr-spark", has=spark)
    expect(figure.locator("figcaption")).to_contain_text(f"3 results since {day_shown(400)}")
    latest = page.locator("li.sr-compact__item", has=figure)
    expect(latest).to_contain_text("HbA1c level (IFCC standardised)")
    expect(latest).to_contain_text("49 mmol/mol")
    results = page.locator("section[aria-labelledby=h-results]")
    expect(results.get_by_text("HbA1c level (IFCC standardised)", exact=True)).to_have_count(1)
    figure.get_by_role("link", name="Chart of HbA1c level (IFCC standardised)").click()
    expect(page.get_by_role("heading", name="Test results", level=1)).to_be_visible()


def test_the_summary_fits_one_screen_at_1280_by_800(live_server: Any, page: Page) -> None:
    """At 1280x800 the demo person's whole summary is on the first screen, unscrolled.

    Measured from the page's top, so the header, banner and heading count: the summary's
    two columns end by 800 px. Each list shows its latest few with "See all N" to its
    section, so a longer record keeps the same shape.
    """
    person = fed_person("glance-screen")
    User.objects.create_user(
        "gp.screen", password=PASSWORD, organisation=partner("Z81001"), role="gp"
    )
    page.set_viewport_size({"width": 1280, "height": 800})
    _sign_in(page, live_server.url, "gp.screen")
    page.goto(f"{live_server.url}/access/{person.public_id}/")
    page.get_by_label("I am directly involved in this person's care").check()
    page.get_by_role("button", name="View record").click()
    expect(page.locator(".sr-summary")).to_be_visible()
    bottom = page.evaluate(
        "() => document.querySelector('.sr-summary').getBoundingClientRect().bottom"
        " + window.scrollY"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "summary-one-screen-1280x800.png"), full_page=True)
    # About 780 px today: a notice under the banner (a stale source, a launch) or an
    # emergency access box pushes it past the screen, as it should.
    assert bottom <= 800, bottom
    columns = page.evaluate(
        "() => [...document.querySelectorAll('.sr-summary__column')]"
        ".map(c => Math.round(c.getBoundingClientRect().left))"
    )
    assert len(set(columns)) == 2, columns  # two columns side by side


def test_a_printed_record_keeps_the_banner_and_drops_navigation_and_link_addresses(
    live_server: Any, page: Page
) -> None:
    person = fed_person("glance-print")
    User.objects.create_user(
        "gp.print", password=PASSWORD, organisation=partner("Z81001"), role="gp",
        first_name="Amira", last_name="Okafor",
    )  # fmt: skip
    _sign_in(page, live_server.url, "gp.print")
    page.goto(f"{live_server.url}/access/{person.public_id}/")
    page.get_by_label("I am directly involved in this person's care").check()
    page.get_by_role("button", name="View record").click()
    page.emulate_media(media="print")
    expect(page.locator("#patient-banner")).to_be_visible()
    expect(page.locator("#printed-by")).to_be_visible()
    expect(page.locator("#printed-by")).to_contain_text("Confidential. Printed by Amira Okafor")
    for hidden in (".nhsuk-header", ".sr-record-nav", "footer", "#sources"):
        assert page.locator(hidden).first.is_hidden(), hidden
    after = page.evaluate(
        "[...document.querySelectorAll('main a')].map(a => getComputedStyle(a, '::after').content)"
    )
    assert after
    assert set(after) <= {"none", "normal"}, after
    pdf = page.pdf()  # chromium lays the page out for print without error
    assert pdf.startswith(b"%PDF")
    page.emulate_media(media="screen")
    expect(page.locator("#printed-by")).to_be_hidden()


def test_the_residents_page_needs_no_sign_in_and_passes_axe(live_server: Any, page: Page) -> None:
    partner("Z81001")
    for width_name, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{live_server.url}/about")
        expect(page.get_by_role("heading", name="Your shared care record")).to_be_visible()
        expect(page.get_by_text("Riverside Medical Practice")).to_be_visible()
        assert serious_accessibility_violations(page) == []
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"residents-{width_name}.png"), full_page=True)
