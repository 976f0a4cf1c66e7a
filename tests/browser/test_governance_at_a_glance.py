"""Each role that reaches the governance and opt-out pages reads them in chromium, at three widths.

Per role and page: no raw code (the record's label table, role, action, outcome, purpose
and reason codes, ODS codes, usernames) shows as text, no ISO time, nothing scrolls
sideways, axe finds nothing serious, the trail's tables use a desktop's width, and a
screenshot is written to .data/screenshots/ (ignored by git) for review. The roles: the
programme's privacy officer (the whole trail), a practice's privacy officer (its record-holder
and staff views), the practice's receptionist (the opt-out registry), the programme's
objections officer, and anyone at the sign-in page.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from guardian.shortcuts import assign_perm
from playwright.sync_api import Page, expect

from audit.governance import SECTION_WORDS
from audit.models import (
    FLAGGED_FOR_REVIEW,
    AuditAction,
    AuditEvent,
    AuditOutcome,
    ReviewOutcome,
)
from audit.templatetags.governance import PURPOSES, REASONS, RELATIONSHIP_WORDS
from optout.models import OptOutRoute, OptOutStatus
from sharedrecord.models import Organisation, Patient, StaffRole, User
from sharedrecord.presentation.types import RAW_CODES
from tests.browser.conftest import BASE_DIR, serious_accessibility_violations
from tests.factories import fed_person, next_nhs_number, partner
from tests.sharedrecord.test_plain_english import ISO_TIME, texts

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-browser-test-password"
SHOTS = BASE_DIR / ".data" / "screenshots"
WIDTHS = {"desktop": (1280, 800), "tablet": (768, 1024), "phone": (375, 812)}
PROGRAMME = "ZSR01"
# Codes the governance pages turn into words: none may show as a piece of text on its own.
CODES = frozenset(
    {*RAW_CODES, *StaffRole.values, *AuditAction.values, *AuditOutcome.values,
     *ReviewOutcome.values, *OptOutStatus.values, *OptOutRoute.values, *PURPOSES, *REASONS,
     *RELATIONSHIP_WORDS, *SECTION_WORDS}
)  # fmt: skip


def _distinctive() -> re.Pattern[str]:
    """ODS codes, usernames, purpose and reason codes: never shown inside text either."""
    words = {*Organisation.objects.values_list("ods_code", flat=True), *PURPOSES, *REASONS}
    words |= set(User.objects.filter(username__contains=".").values_list("username", flat=True))
    return re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, sorted(words))) + r")(?![\w])")


class Walk:
    """Checks each page it is shown at the three widths and keeps what falls short."""

    def __init__(self, page: Page, role: str) -> None:
        self.page, self.role = page, role
        self.problems: dict[str, list[str]] = {}
        self.seen: list[str] = []
        self.distinctive = _distinctive()
        SHOTS.mkdir(parents=True, exist_ok=True)

    def check(self, name: str, *, wide: bool = False) -> None:
        """The page now showing, at each width (resized in place, so a POST's answer stays)."""
        page, found = self.page, []
        pieces = texts(page.locator("main").inner_html())
        found += [f"raw code {t}" for t in sorted({t for t in pieces if t in CODES})]
        found += [
            f"code in text: {m}" for m in sorted(set(self.distinctive.findall(" ".join(pieces))))
        ]
        found += [f"ISO time {t}" for t in ISO_TIME.findall(" ".join(pieces))]
        for width_name, (width, height) in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(50)
            if (scroll := page.evaluate("document.documentElement.scrollWidth")) > width:
                found.append(f"scrolls sideways at {width_name} ({scroll} px)")
            if wide:
                # All the screen but the margins (32 px a side at most): on a desktop that
                # is wider than the design system's 960 px container.
                used = page.evaluate(
                    "document.querySelector('main').closest('.nhsuk-width-container')"
                    ".getBoundingClientRect().width"
                )
                if used < width - 64:
                    found.append(f"uses {used} px of a {width} px screen")
            found += [f"{v} at {width_name}" for v in serious_accessibility_violations(page)]
            page.screenshot(path=str(SHOTS / f"{self.role}-{name}-{width_name}.png"),
                            full_page=True)  # fmt: skip
        page.set_viewport_size({"width": 1280, "height": 800})
        self.seen.append(name)
        if found:
            self.problems[name] = found

    def visit(self, name: str, url: str, **kwargs: Any) -> None:
        response = self.page.goto(url)
        assert response is not None, name
        assert response.status == 200, (name, response.status)
        self.check(name, **kwargs)


def _sign_in(page: Page, base: str, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Shared care record")).to_be_visible()


def _user(username: str, ods: str, role: str, first: str, last: str) -> User:
    organisation = partner(ods) if ods != PROGRAMME else _programme()
    return User.objects.create_user(
        username, password=PASSWORD, organisation=organisation, role=role,
        first_name=first, last_name=last,
    )  # fmt: skip


def _programme() -> Organisation:
    programme, _ = Organisation.objects.get_or_create(
        ods_code=PROGRAMME,
        defaults={"name": "Borough Shared Care Record Programme", "kind": "other"},
    )
    return programme


def _accesses(person: Patient) -> tuple[AuditEvent, AuditEvent]:
    """An A&E doctor's emergency access and what they opened; a clinician's
    self-declared relationship. Both wait in the review queue."""
    doctor = Client()
    doctor.force_login(_user("ae.gov", "ZAC01", "clinical-practitioner", "Daniel", "Reyes"))
    doctor.post(
        f"/access/{person.public_id}/emergency",
        {"reason_code": "OVRER", "reason_text": "Brought in unconscious, no one to ask"},
    )
    assert doctor.get(f"/record/{person.public_id}/").status_code == 200
    assert doctor.get(f"/record/{person.public_id}/medications").status_code == 200
    # A clinician of a trust the feeds show no link to describes their role themselves.
    trust, _ = Organisation.objects.get_or_create(
        ods_code="ZMH01",
        defaults={"name": "Borough Mental Health NHS Trust", "kind": "mental-health",
                  "dsa_start": "2025-01-01"},
    )  # fmt: skip
    unlinked = User.objects.create_user(
        "mh.gov", password=PASSWORD, organisation=trust, role="clinical-practitioner",
        first_name="Ruth", last_name="Campbell",
    )  # fmt: skip
    clinician = Client()
    clinician.force_login(unlinked)
    clinician.post(
        f"/access/{person.public_id}/",
        {"confirm": "yes", "claimed_relationship": "Allocated to this person's care"},
    )
    assert clinician.get(f"/record/{person.public_id}/").status_code == 200
    # The trail is append-only, so earlier tests' events stay: pick this person's.
    flagged = AuditEvent.objects.filter(
        FLAGGED_FOR_REVIEW, detail__has_key="basis", nhs_number=person.nhs_number
    )
    glass = flagged.get(actor_name="ae.gov", action=AuditAction.BREAK_GLASS)
    claimed = flagged.get(actor_name="mh.gov", action=AuditAction.ACCESS_BASIS)
    return glass, claimed


@pytest.fixture
def scene(settings: Any) -> tuple[Patient, AuditEvent, AuditEvent]:
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME]
    person = fed_person("governance-glance")
    return (person, *_accesses(person))


def test_the_programmes_privacy_officer_reads_every_governance_page_at_three_widths(
    live_server: Any, page: Page, scene: tuple[Patient, AuditEvent, AuditEvent]
) -> None:
    person, glass, _ = scene
    _user("privacy.gov", PROGRAMME, "privacy-officer", "Oliver", "Grant")
    base = live_server.url
    walk = Walk(page, "programme-privacy-officer")
    _sign_in(page, base, "privacy.gov")
    walk.visit("governance-home", f"{base}/governance/", wide=True)
    count = page.locator("#review-count")
    expect(count).to_contain_text(re.compile(r"[0-9]+ accesses to review"))
    # The count is a dark tag on a white card, not blue on blue.
    assert count.locator("strong").evaluate("e => getComputedStyle(e).color") != count.evaluate(
        "e => getComputedStyle(e.closest('.nhsuk-card')).backgroundColor"
    )

    page.get_by_label("NHS number").first.fill(person.nhs_number)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_role("cell", name="Daniel Reyes").first).to_be_visible()
    # The form comes first, then a table as wide as the page's content.
    form_box = page.locator("form[role=search]").bounding_box()
    table_box = page.locator("table.governance-events").bounding_box()
    assert form_box is not None
    assert table_box is not None
    assert form_box["y"] < table_box["y"]
    assert table_box["width"] > 1100
    walk.check("event-search", wide=True)

    page.goto(f"{base}/governance/reviews")
    rows = page.locator("table.governance-events tbody tr")
    kinds = ["Emergency" in row for row in rows.all_inner_texts()]
    assert kinds.count(True) >= 1
    assert kinds.count(False) >= 1
    assert kinds == sorted(kinds, reverse=True)  # emergency access first
    assert rows.get_by_role("link", name=re.compile("^Review")).count() == len(kinds)
    walk.check("review-queue", wide=True)

    page.locator(f'a.sr-review-button[href="/governance/events/{glass.id}"]').click()
    expect(
        page.get_by_role("heading", name="What Daniel Reyes opened under this basis")
    ).to_be_visible()
    opened = page.locator("#opened-under-basis tbody tr")
    expect(opened).to_have_count(2)
    expect(page.locator("#opened-under-basis")).to_contain_text("medicines")
    walk.check("review-page", wide=True)

    page.get_by_role("button", name="Save finding").click()
    summary = page.locator(".nhsuk-error-summary")
    expect(summary).to_be_visible()
    expect(summary.get_by_role("link", name=re.compile("^Choose a finding"))).to_be_visible()
    expect(summary.get_by_role("link", name=re.compile("^Write a note"))).to_be_visible()
    # The summary comes before the heading, and each message leads to its field.
    assert summary.bounding_box()["y"] < page.locator("h1").bounding_box()["y"]  # type: ignore[index]
    hrefs = summary.locator("a").evaluate_all("links => links.map(a => a.hash)")
    assert sorted(hrefs) == ["#id_note", "#id_outcome_0"], hrefs
    assert page.locator(".nhsuk-form-group--error").count() == 2
    assert page.title().startswith("Error: ")
    walk.check("review-page-with-errors", wide=True)
    page.get_by_label("Justified", exact=True).check()
    page.get_by_label("Note").fill("Resus notes confirm the patient arrived unconscious")
    page.get_by_role("button", name="Save finding").click()
    banner = page.locator(".nhsuk-notification-banner--success")
    expect(banner).to_contain_text("Finding saved: Justified")
    expect(page.get_by_role("heading", name="Accesses to review")).to_be_visible()
    walk.check("review-saved", wide=True)

    page.goto(f"{base}/governance/events/{glass.id}")
    expect(page.get_by_text("Resus notes confirm")).to_be_visible()
    walk.check("event-detail", wide=True)

    page.goto(f"{base}/governance/subject-access?nhs_number={person.nhs_number}")
    expect(
        page.get_by_role("heading", name=re.compile("Who has looked at Margaret"))
    ).to_be_visible()
    expect(page.locator("#sar-subject")).to_contain_text("Date of birth")
    report = page.locator("#sar-accesses")
    expect(report).to_contain_text("Borough General Hospital")
    expect(report).to_contain_text("Clinical practitioner (doctor)")
    expect(page.locator("#sar-governance")).to_contain_text("Oliver Grant")
    walk.check("subject-access-report", wide=True)
    page.goto(f"{base}/governance/subject-access?nhs_number=123")
    expect(page.locator(".nhsuk-error-summary")).to_contain_text("Enter a valid 10-digit")
    walk.check("subject-access-with-errors", wide=True)
    assert walk.seen
    assert walk.problems == {}


def test_a_practices_privacy_officer_reads_its_scoped_pages_at_three_widths(
    live_server: Any, page: Page, scene: tuple[Patient, AuditEvent, AuditEvent]
) -> None:
    person, glass, claimed = scene
    _user("privacy.practice", "Z81001", "privacy-officer", "Helen", "Marsh")
    base = live_server.url
    walk = Walk(page, "practice-privacy-officer")
    _sign_in(page, base, "privacy.practice")
    walk.visit("governance-home", f"{base}/governance/", wide=True)
    expect(page.locator("#review-count")).to_contain_text(re.compile(r"[0-9]+ accesses to review"))
    expect(page.locator("#staff-review-count")).to_contain_text("by your staff to review")
    walk.visit("review-queue", f"{base}/governance/reviews", wide=True)
    expect(
        page.locator(f'a.sr-review-button[href="/governance/events/{glass.id}?scope=holder"]')
    ).to_be_visible()
    expect(
        page.locator(f'a.sr-review-button[href="/governance/events/{claimed.id}?scope=holder"]')
    ).to_be_visible()
    walk.visit("review-queue-staff", f"{base}/governance/reviews?scope=staff", wide=True)
    walk.visit("review-page", f"{base}/governance/events/{claimed.id}?scope=holder", wide=True)
    expect(page.get_by_text("Self-declared relationship: Allocated")).to_be_visible()
    expect(page.locator("#opened-under-basis tbody tr")).to_have_count(1)
    page.goto(f"{base}/governance/events?nhs_number={person.nhs_number}")
    expect(page.get_by_role("cell", name="Ruth Campbell").first).to_be_visible()
    walk.check("event-search", wide=True)
    walk.visit("event-detail", f"{base}/governance/events/{glass.id}", wide=True)

    name = "Riverside Medical Practice"
    page.goto(f"{base}/governance/subject-access?nhs_number={person.nhs_number}")
    expect(page.locator("#sar-covers")).to_contain_text(f"Only what {name} may see")
    expect(page.locator("#sar-accesses")).to_contain_text("Daniel Reyes")
    walk.check("subject-access-report", wide=True)
    page.goto(f"{base}/governance/subject-access?nhs_number={next_nhs_number()}")
    expect(page.locator("#sar-nobody")).to_contain_text(f"Nothing in {name}'s view")
    walk.check("subject-access-nothing-in-view", wide=True)
    assert walk.seen
    assert walk.problems == {}


def test_a_receptionist_checks_who_a_number_is_before_an_opt_out_at_three_widths(
    live_server: Any, page: Page, settings: Any
) -> None:
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME]
    person = fed_person("optout-glance")
    clerk = _user("clerk.gov", "Z81001", "admin-clerk", "Tom", "Hughes")
    assign_perm("sharedrecord.manage_optouts", clerk, partner("Z81001"))
    base = live_server.url
    walk = Walk(page, "receptionist")
    _sign_in(page, base, "clerk.gov")
    walk.visit("optout-list-empty", f"{base}/optouts/")
    walk.visit("optout-record", f"{base}/optouts/record")
    page.get_by_label("NHS number").fill("12345")
    page.get_by_role("button", name="Continue").click()
    expect(page.locator(".nhsuk-error-summary")).to_contain_text("Enter a valid 10-digit")
    walk.check("optout-record-with-errors")

    number = person.nhs_number
    page.get_by_label("NHS number").fill(f"{number[:3]} {number[3:6]} {number[6:]}")
    page.get_by_label("Note (optional)").fill("Asked at the front desk")
    page.get_by_role("button", name="Continue").click()
    identity = page.locator(".nhsuk-summary-list").first
    expect(identity).to_contain_text("Margaret Ellison")
    expect(identity).to_contain_text("Date of birth")
    expect(identity).to_contain_text("14 March 1941")
    expect(identity).not_to_contain_text("Not known")  # an address is shown too
    walk.check("optout-check")
    page.get_by_role("button", name="Change the details").click()
    expect(page.get_by_label("NHS number")).to_have_value(number)
    expect(page.get_by_label("Note (optional)")).to_have_value("Asked at the front desk")
    walk.check("optout-change")

    unknown = next_nhs_number()
    page.get_by_label("NHS number").fill(unknown)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("This NHS number matches no record held")).to_be_visible()
    walk.check("optout-check-no-record")
    page.get_by_role("button", name="Record opt-out").click()
    expect(page.locator(".nhsuk-notification-banner--success")).to_contain_text("Opt-out recorded")
    walk.check("optout-entry")
    page.get_by_role("link", name="Record that they opt back in").click()
    walk.check("optout-opt-in-confirm")
    walk.visit("optout-list", f"{base}/optouts/")
    expect(page.get_by_text("1 entry")).to_be_visible()
    assert walk.seen
    assert walk.problems == {}


def test_the_objections_officer_and_the_sign_in_page_read_at_three_widths(
    live_server: Any, page: Page, settings: Any
) -> None:
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME]
    person = fed_person("objection-glance")
    _user("objections.gov", PROGRAMME, "objections-officer", "Nadia", "Rahman")
    base = live_server.url
    walk = Walk(page, "sign-in")
    walk.visit("sign-in", f"{base}/accounts/login/")
    page.get_by_label("Username").fill("objections.gov")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    walk.check("sign-in-refused")
    assert walk.problems == {}

    walk = Walk(page, "objections-officer")
    _sign_in(page, base, "objections.gov")
    walk.visit("objection", f"{base}/optouts/objections/")
    page.get_by_label("NHS number").fill(person.nhs_number)
    page.get_by_label("By phone").check()
    page.get_by_role("button", name="Continue").click()
    expect(
        page.get_by_role("heading", name="Check before you record this objection")
    ).to_be_visible()
    expect(page.locator(".nhsuk-summary-list").first).to_contain_text("14 March 1941")
    expect(page.get_by_text("Riverside Medical Practice")).to_be_visible()
    walk.check("objection-check")
    assert walk.seen
    assert walk.problems == {}
