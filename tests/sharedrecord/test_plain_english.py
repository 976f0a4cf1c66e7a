"""Record pages read in plain English: no raw code from the label table, no ISO times.

Every record page (the summary, each section, a document) is opened by each
persona; every piece of text on it is checked against the label table's codes
(statuses, required codes, care settings and the jargon senders copy into
displays), and every date against the "18 Nov 2026 11:00" form.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.test import Client

from sharedrecord.models import Patient, RecordSection
from sharedrecord.presentation.types import DATE_LABELS, RAW_CODES, label_for
from tests.factories import client_for, confirm_basis, main_html, shown_entries
from tests.sharedrecord.fidelity import probe, row

pytestmark = pytest.mark.django_db
PERSONAS = ["registered_gp", "treating_clinician", "social_worker"]
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(T|\s)\d{2}:\d{2}")


def texts(markup: str) -> list[str]:
    """Each piece of text a reader sees on its own (between tags), decoded and trimmed."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", markup, flags=re.S)
    pieces = (html.unescape(t).strip() for t in re.split(r"<[^>]+>", body))
    return [p.rstrip(":;,").strip() for p in pieces if p.strip()]


def raw_codes_on(markup: str) -> list[str]:
    return sorted({t for t in texts(markup) if t in RAW_CODES})


def record_pages(client: Client, patient: Patient) -> dict[str, str]:
    """Every record page this client may open for the person: summary, sections, documents."""
    pages = {"summary": main_html(client.get(f"/record/{patient.public_id}/"))}
    for section in RecordSection.values:
        response = client.get(f"/record/{patient.public_id}/{section}")
        if response.status_code == 200:
            pages[section] = main_html(response)
            if section == "documents":
                for entry in shown_entries(response):
                    url = f"/record/{patient.public_id}/documents/{entry}"
                    pages[f"document {entry}"] = main_html(client.get(url))
    return pages


@pytest.mark.parametrize("persona", PERSONAS)
def test_no_raw_code_or_iso_time_appears_on_any_record_page(
    request: pytest.FixtureRequest, persona: str, record: Patient
) -> None:
    client = client_for(request.getfixturevalue(persona))
    confirm_basis(client, record, claim="Allocated to this person's care")
    pages = record_pages(client, record)
    assert len(pages) > 5
    found = {name: raw_codes_on(markup) for name, markup in pages.items()}
    assert found == {name: [] for name in pages}
    times = {name: ISO_TIME.findall(markup) for name, markup in pages.items()}
    assert times == {name: [] for name in pages}
    assert not [name for name, markup in pages.items() if re.search(r"\b1 items\b", markup)]


def test_the_check_itself_finds_a_raw_code() -> None:
    # The oracle must be able to fail: a status or setting shown bare is found.
    assert raw_codes_on("<li><span>Setting:</span> ambulatory</li><td>booked</td>") == [
        "ambulatory",
        "booked",
    ]
    assert ISO_TIME.search("Ended: 2026-11-18 11:00")


def test_a_care_setting_reads_in_words_from_its_code_or_its_display(
    client: Client, registered_gp: Any
) -> None:
    sent = probe(
        {"resourceType": "Encounter", "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "type": [{"text": "Telephone consultation"}],
         "period": {"start": "2026-11-18T10:00:00Z", "end": "2026-11-18T11:00:00Z"}},
        {"resourceType": "Encounter", "status": "finished",
         "class": {"display": "inpatient encounter"}, "type": [{"text": "Ward stay"}],
         "period": {"start": "2026-10-01T10:00:00Z", "end": "2026-10-03T11:00:00Z"}},
        {"resourceType": "Encounter", "status": "finished",
         "class": {"code": "XYZ", "display": "Day unit"}, "type": [{"text": "Day case"}],
         "period": {"start": "2026-09-01T10:00:00Z"}},
    )  # fmt: skip
    client.force_login(registered_gp)
    confirm_basis(client, sent.patient)
    page = main_html(client.get(f"/record/{sent.patient.public_id}/encounters"))
    assert "Setting: Outpatient or community" in row(page, sent.entry("encounter-1"))
    assert "Ended: 18 Nov 2026 11:00" in row(page, sent.entry("encounter-1"))
    assert "Setting: Inpatient" in row(page, sent.entry("encounter-2"))
    # A code outside the table is shown as the sender named it, never guessed.
    assert "Setting: Day unit" in row(page, sent.entry("encounter-3"))


def test_the_label_table_turns_each_code_into_words_and_leaves_unknown_codes_as_sent() -> None:
    assert label_for("booked") == "Booked"
    assert label_for("current") == "Current"
    assert label_for("entered-in-error") == "Entered in error"
    assert label_for("AMB") == "Outpatient or community"
    assert label_for("ambulatory") == "Outpatient or community"
    assert label_for("needs-action") == "Not yet replied"
    assert label_for("some-new-code") == "Some new code"


DATE_SHOWN = re.compile(r"\d{1,2} [A-Z][a-z]{2} \d{4}(?: \d{2}:\d{2})?")


@pytest.mark.parametrize(
    ("section", "label"),
    [("problems", "Onset"), ("results", "Taken"), ("medications", "Started"),
     ("allergies", "Recorded"), ("encounters", "When"), ("care-plans", "Started")],
)  # fmt: skip
def test_each_section_says_what_its_dates_mean(
    client: Client, registered_gp: Any, record: Patient, section: str, label: str
) -> None:
    assert DATE_LABELS[section] == label
    client.force_login(registered_gp)
    confirm_basis(client, record)
    page = main_html(client.get(f"/record/{record.public_id}/{section}"))
    assert f'<th scope="col" class="nhsuk-table__header">{label}</th>' in page
    summary = main_html(client.get(f"/record/{record.public_id}/"))
    block = re.search(rf'<section aria-labelledby="h-{section}">.*?</section>', summary, re.S)
    # On the summary each item says its date once: in its details, or beside its source with
    # the section's label ("Onset 5 Jun 2018 · Riverside Medical Practice").
    assert block is not None
    for item in re.findall(r'<li class="sr-compact__item".*?</li>', block.group(0), re.S):
        meta = re.search(r'<p class="sr-compact__meta">(.*?)</p>', item, re.S)
        assert meta is not None
        dates = DATE_SHOWN.findall(re.sub(r"<[^>]+>", "", item))
        assert len(dates) == len(set(dates)), item  # no date said twice
        details = re.search(r'<p class="sr-compact__details">(.*?)</p>', item, re.S)
        said_in_details = details is not None and bool(DATE_SHOWN.search(details.group(1)))
        assert meta.group(1).startswith(f"{label} ") or said_in_details, item


def test_a_date_is_left_off_the_summary_line_only_when_a_detail_says_that_very_date() -> None:
    from sharedrecord.presentation.entries import Detail, ShownEntry

    def item(value: str, label: str = "Onset", when: str = "5 May 2020 11:00") -> ShownEntry:
        return ShownEntry(
            public_id="x", resource_type="Condition", section="problems", title="Asthma",
            when=None, status="", source_name="GP", source_ods="Z", updated_at=None,  # type: ignore[arg-type]
            when_shown=when, details=[Detail(label, value)],
        )  # fmt: skip

    assert item("5 May 2020 11:00").date_in_details
    assert item("from 5 May 2020 11:00", label="Taken").date_in_details  # a period's start
    assert item("5 May 2020 11:00 to 9 May 2020 10:00", label="Period").date_in_details
    assert not item("15 May 2020 11:00").date_in_details  # another day
    assert not item("5 May 2020 11:00", label="Issued").date_in_details  # another meaning
    assert not item("3 Mar 2020", when="2020").date_in_details  # a partial date is said
    assert not item("2020", when="2020").date_in_details


def test_an_end_on_the_same_day_is_said_in_the_summary_line_and_not_again() -> None:
    from sharedrecord.presentation.entries import Detail, ShownEntry

    def visit(end: str, label: str = "Ended", *, starts: bool = True, **more: str) -> ShownEntry:
        details = [Detail("Setting", "Home"), *(Detail(k, v) for k, v in more.items()),
                   Detail(label, end)]  # fmt: skip
        return ShownEntry(
            public_id="x", resource_type="Encounter", section="encounters", title="Visit",
            when=None, status="", source_name="GP", source_ods="Z", updated_at=None,  # type: ignore[arg-type]
            when_shown="19 Nov 2026 10:00", details=details, when_is_start=starts,
        )  # fmt: skip

    same_day = visit("19 Nov 2026 11:00")
    assert same_day.when_line == "19 Nov 2026 10:00 to 11:00"
    assert [d.label for d in same_day.summary_details] == ["Setting"]
    assert [d.label for d in visit("19 Nov 2026 11:00", "Ends").summary_details] == ["Setting"]
    left_alone = [
        visit("20 Nov 2026 09:00"),  # another day
        visit("19 Nov 2026"),  # no time
        visit("19 Nov 2026 11:00", "Due"),  # another meaning
        visit("19 Nov 2026 09:00"),  # before the start: said as sent, not as a period
        visit("19 Nov 2026 11:00 (about)"),  # more than a date
        visit("19 Nov 2026 11:00", starts=False),  # the date is not its start (created)
        # Another detail says the date, so the line leaves it off: the end stays a detail.
        visit("19 Nov 2026 11:00", Note="19 Nov 2026 10:00 to 10:30 on the ward"),
    ]
    for other in left_alone:
        assert other.when_line == "19 Nov 2026 10:00", other.details
        assert other.details[-1] in other.summary_details, other.details


def test_a_care_plan_on_the_summary_gives_its_period_and_not_its_content() -> None:
    from sharedrecord.presentation.entries import Detail, ShownEntry

    plan = ShownEntry(
        public_id="x", resource_type="CarePlan", section="care-plans", title="Falls plan",
        when=None, status="", source_name="GP", source_ods="Z", updated_at=None,  # type: ignore[arg-type]
        when_shown="1 Feb 2026", when_is_start=True,
        details=[Detail("Plan", "Balance class"), Detail("Period", "from 1 Feb 2026"),
                 Detail("Activity", "Strength and balance class (scheduled)")],
    )  # fmt: skip
    assert [d.label for d in plan.summary_details] == ["Period"]
    assert plan.date_in_details  # "Period: from 1 Feb 2026" says it
