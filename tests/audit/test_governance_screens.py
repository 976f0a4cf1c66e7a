"""Governance screens people can use: names, visible counts, the queue, findings, the SAR."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent
from audit.templatetags.governance import shown, why
from sharedrecord.models import Organisation
from tests.audit.test_governance import Scene, events_for
from tests.factories import client_for, main_html, make_officer, next_nhs_number
from tests.sharedrecord.fidelity import words

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("programme")]


@pytest.fixture(scope="module")
def module_scene(module_transaction: None, django_db_blocker: Any) -> Scene:
    with django_db_blocker.unblock():
        scene = Scene()
        scene.ae.first_name, scene.ae.last_name = "Daniel", "Reyes"
        scene.ae.save()
        return scene


@pytest.fixture
def scene(module_scene: Scene, db: None) -> Scene:
    return module_scene


def _glass(scene: Scene) -> AuditEvent:
    return next(e for e in scene.flagged() if e.action == AuditAction.BREAK_GLASS)


def test_officers_read_names_organisations_and_role_labels_with_codes_on_hover(
    scene: Scene,
) -> None:
    reviewer = client_for(make_officer())
    page = main_html(reviewer.get("/governance/events", {"nhs_number": scene.nhs_number}))
    acute = Organisation.objects.get(ods_code="ZAC01").name
    assert f'<span title="Username: {scene.ae.username}">Daniel Reyes</span>' in page
    assert f'<span title="ODS code: ZAC01">{acute}</span>' in page
    assert (
        '<span title="Role code: clinical-practitioner">Clinical practitioner (doctor)</span>'
        in page
    )
    # Nobody's username, ODS code or role code is shown as text on its own.
    shown = words(re.sub(r'title="[^"]*"', "", page))
    assert "clinical-practitioner" not in shown
    assert " ZAC01" not in shown


def test_the_search_form_comes_before_the_results(scene: Scene) -> None:
    page = main_html(
        client_for(make_officer()).get("/governance/events", {"nhs_number": scene.nhs_number})
    )
    assert page.index('role="search"') < page.index("governance-events")


def test_the_review_count_is_a_visible_tag_and_not_a_link_coloured_on_blue(scene: Scene) -> None:
    home = main_html(client_for(make_officer()).get("/governance/"))
    assert "nhsuk-card--feature" not in home  # its heading is blue on blue
    assert re.search(r'id="review-count"><strong class="nhsuk-tag[^"]*">\d+</strong>', home)


def test_the_queue_puts_emergency_access_first_each_with_a_review_button(scene: Scene) -> None:
    # An older self-declared access waits too: emergency access still comes first.
    queue = main_html(client_for(make_officer()).get("/governance/reviews"))
    rows = re.findall(r'<tr role="row" class="nhsuk-table__row">.*?</tr>', queue, re.S)
    assert len(rows) >= 2
    kinds = ["Emergency" in row for row in rows]
    assert kinds == sorted(kinds, reverse=True)  # every emergency row before any other
    assert all(">Review<span" in row for row in rows)
    glass = _glass(scene)
    assert f'href="/governance/events/{glass.id}">Review' in queue


def test_the_review_page_shows_what_was_opened_under_that_basis_and_audits_it(
    scene: Scene,
) -> None:
    user = make_officer()
    glass = _glass(scene)
    page = main_html(client_for(user).get(f"/governance/events/{glass.id}"))
    opened = [
        e for e in events_for(scene.nhs_number)
        if e.actor_name == scene.ae.username and e.action == AuditAction.RECORD_VIEW
    ]  # fmt: skip
    assert opened
    table = re.search(r'<table [^>]*id="opened-under-basis">.*?</table>', page, re.S)
    assert table is not None
    assert "What Daniel Reyes opened under this basis" in page
    assert words(table.group(0)).count("Viewed a record (the summary") == len(opened)
    audited = AuditEvent.objects.filter(
        actor_name=user.username, action=AuditAction.AUDIT_QUERY, detail__via="basis-use"
    ).get()
    assert audited.detail["shown"] == [e.id for e in reversed(opened)]
    # An ordinary view recorded no basis of its own: nothing to list.
    ordinary = main_html(client_for(user).get(f"/governance/events/{opened[0].id}"))
    assert "opened under this basis" not in ordinary


def test_a_saved_finding_is_confirmed_and_a_missing_one_gets_an_error_summary(
    scene: Scene,
) -> None:
    reviewer = client_for(make_officer())
    glass = _glass(scene)
    missing = reviewer.post(f"/governance/events/{glass.id}", {"outcome": "", "note": ""})
    assert missing.status_code == 400
    summary = re.search(
        r'<div class="nhsuk-error-summary".*?</div>\s*</div>', missing.content.decode(), re.S
    )
    assert summary is not None
    # Each message says what to do and leads to its field (the first radio, the note).
    assert '<a href="#id_outcome_0">Choose a finding' in summary.group(0)
    assert '<a href="#id_note">Write a note saying why' in summary.group(0)
    saved = reviewer.post(
        f"/governance/events/{glass.id}",
        {"outcome": "referred", "note": "Asked the Caldicott Guardian"},
        follow=True,
    )
    page = main_html(saved)
    assert "nhsuk-notification-banner--success" in page
    assert "Finding saved: Referred" in page


def test_the_subject_access_report_reads_for_a_citizen(scene: Scene) -> None:
    maker = make_officer()
    maker.first_name, maker.last_name = "Oliver", "Grant"
    maker.save()
    officer = client_for(maker)
    for _ in range(2):  # governance searches
        officer.get("/governance/events", {"nhs_number": scene.nhs_number})
    response = officer.get("/governance/subject-access", {"nhs_number": scene.nhs_number})
    page = main_html(response)
    said = words(page)
    assert re.search(r"Who has looked at Margaret \w+'s shared care record", said)
    assert "Date of birth 14 March 1941" in said
    table = re.search(r'<table [^>]*id="sar-accesses">.*?</table>', page, re.S)
    assert table is not None
    rows = re.findall(r'<tr role="row" class="nhsuk-table__row">.*?</tr>', table.group(0), re.S)
    # One line per organisation, member of staff and day: the A&E doctor's search, basis
    # and views are one line, saying what was looked at and that it was an emergency.
    ae_rows = [words(r) for r in rows if "Daniel Reyes" in r]
    assert len(ae_rows) == 1
    assert "Used emergency access" in ae_rows[0] or "used emergency access" in ae_rows[0]
    assert "the summary" in ae_rows[0]
    assert ae_rows[0].rstrip().endswith("Yes")
    assert "Borough General Hospital" in ae_rows[0]
    assert "Clinical practitioner (doctor)" in ae_rows[0]
    # Governance work is listed apart, never as a look at the care record.
    assert "Privacy and governance checks" in said
    assert not any("Subject access report" in words(r) for r in rows)
    # One line per officer, day and kind of work, however many searches it took.
    checks = re.search(r'<ul [^>]*id="sar-governance">.*?</ul>', page, re.S)
    assert checks is not None
    mine = [words(li) for li in re.findall(r"<li>.*?</li>", checks.group(0), re.S)
            if "Oliver Grant" in li]  # fmt: skip
    assert len(mine) == 1
    assert "(searched the audit trail, 2 times)" in mine[0]


def test_a_practices_report_says_what_it_covers_and_nothing_in_its_view(
    client: Client,
) -> None:
    practice = make_officer("Z81001", "gp-practice")
    nobody = next_nhs_number()
    page = words(
        main_html(client_for(practice).get("/governance/subject-access", {"nhs_number": nobody}))
    )
    name = Organisation.objects.get(ods_code="Z81001").name
    assert f"Only what {name} may see" in page
    assert f"Nothing in {name}'s view" in page
    assert "Nobody has been shown anything" not in page
    assert "No record is held for this NHS number now" in page


def test_why_an_access_happened_reads_in_words_not_codes() -> None:
    # The relationships the feeds showed, and an unknown override reason, were shown as codes.
    basis = AuditEvent(
        action=AuditAction.ACCESS_BASIS, purpose="TREAT",
        detail={"relationships": ["encounter", "registered"], "self_claimed": False},
    )  # fmt: skip
    assert why(basis) == (
        "Direct care; their organisation's link: a recent visit or stay, "
        "registered with their practice"
    )
    glass = AuditEvent(
        action=AuditAction.BREAK_GLASS, purpose="ETREAT",
        detail={"reason_code": "OVRXX", "reason_text": "Collapsed in clinic"},
    )  # fmt: skip
    assert why(glass) == "Emergency access (another reason): Collapsed in clinic"
    viewed = AuditEvent(action=AuditAction.SECTION_VIEW, detail={"section": "care-plans"})
    assert shown(viewed) == "care plans"
    summary = AuditEvent(action=AuditAction.RECORD_VIEW, detail={"section": "summary"})
    assert shown(summary) == "the summary"
