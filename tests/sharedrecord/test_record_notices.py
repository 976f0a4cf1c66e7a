"""The notices under the patient banner: one list, built in one place, in a fixed order."""

from __future__ import annotations

from dataclasses import dataclass

from django.template.loader import render_to_string
from django.utils import timezone

from sharedrecord.live import LiveAnswer, LivePull
from sharedrecord.presentation.notices import record_notices

PERSON = "6f1b7f0e-4d1c-4c53-9a55-5a4a0c2b9d10"


@dataclass
class _Source:
    name: str
    ods_code: str
    late: bool
    last_received_ago: str = "3 days"


def _answer(name: str, ods: str, kind: str) -> LiveAnswer:
    return LiveAnswer(name, ods, "https://x.example", kind, timezone.now())  # type: ignore[arg-type]


def test_it_lists_launch_then_stale_sources_then_silent_live_sources() -> None:
    notices = record_notices(
        patient_id=PERSON,
        launch={"patient": PERSON, "system": "Borough GP System"},
        sources=[_Source("Borough Hospital", "ZH1", True), _Source("Practice", "ZP1", False)],
        live=LivePull(
            answers=(_answer("Valley Hospice", "ZV1", "timeout"), _answer("Ok", "ZO1", "answered"))
        ),
    )
    assert [(n.kind, n.warning, n.source_ods) for n in notices] == [
        ("launch", False, ""),
        ("stale-source", True, "ZH1"),
        ("live-silent", True, "ZV1"),
    ]
    assert notices[0].text == "Opened from Borough GP System"
    assert notices[1].text.startswith(
        "Borough Hospital data may be out of date: last received 3 days"
    )
    assert (
        notices[2].text
        == "Valley Hospice system did not answer in time; its information is not shown."
    )


def test_a_launch_for_another_person_and_a_quiet_record_give_no_notice() -> None:
    other = {"patient": "00000000-0000-0000-0000-000000000000", "system": "EHR"}
    assert record_notices(patient_id=PERSON, launch=other) == []
    assert record_notices(patient_id=PERSON, launch=None, sources=[], live=None) == []


def test_every_notice_renders_in_one_list_under_the_banner() -> None:
    notices = record_notices(
        patient_id=PERSON,
        launch={"patient": PERSON, "system": "EHR"},
        sources=[_Source("Borough Hospital", "ZH1", True)],
        live=LivePull(answers=(_answer("Valley Hospice", "ZV1", "error"),)),
    )
    html = render_to_string("sharedrecord/_notices.html", {"notices": notices})
    assert html.count('id="record-notices"') == 1
    assert html.count("<li") == 3
    assert 'id="launched-from"' in html
    assert 'class="sr-notice sr-notice--warning sr-notice--stale-source stale-source"' in html
    assert 'data-source="ZV1"' in html
    assert "sr-live-silent" in html
    assert html.count("Important: ") == 2
    assert render_to_string("sharedrecord/_notices.html", {"notices": []}).strip() == ""
