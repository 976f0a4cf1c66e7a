"""The results page: a cumulative table by test and date, and filters by test and date."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent
from sharedrecord.models import Entry, Patient
from sharedrecord.presentation.trends import Trend, TrendPoint
from tests.factories import confirm_basis, day_shown, main_html, shown_entries
from tests.sharedrecord.fidelity import words

pytestmark = pytest.mark.django_db


def _results(client: Client, registered_gp: Any, record: Patient, **params: str) -> Any:
    client.force_login(registered_gp)
    confirm_basis(client, record)
    return client.get(f"/record/{record.public_id}/results", params)


def test_results_are_tabled_by_test_across_dates_newest_first(
    client: Client, registered_gp: Any, record: Patient
) -> None:
    page = main_html(_results(client, registered_gp, record))
    table = re.search(r'<table class="nhsuk-table sr-cumulative".*?</table>', page, re.S)
    assert table is not None
    head = words(re.search(r"<thead.*?</thead>", table.group(0), re.S).group(0))  # type: ignore[union-attr]
    days = " ".join(day_shown(n) for n in (20, 40, 220, 400))  # the demo's results, from today
    assert head.startswith(f"Test {days}")
    hba1c = re.search(r"HbA1c level \(IFCC standardised\)</th>.*?</tr>", table.group(0), re.S)
    assert hba1c is not None
    cells = [words(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", hba1c.group(0), re.S)]
    # No HbA1c on the troponin's day; then each HbA1c on its own date, flagged.
    assert cells == [
        "No result",
        "49 mmol/mol Outside range",
        "54 mmol/mol Outside range",
        "58 mmol/mol Outside range",
    ]


def test_results_filter_by_test_and_date_and_the_audit_says_so(
    client: Client, registered_gp: Any, record: Patient
) -> None:
    hba1c = Entry.objects.filter(patient=record, code_display__startswith="HbA1c").first()
    assert hba1c is not None
    response = _results(client, registered_gp, record, test=hba1c.code, **{"from": "2026-01-01"})
    assert response.status_code == 200
    shown = shown_entries(response)
    wanted = Entry.objects.filter(
        patient=record, code=hba1c.code, effective_at__year=2026
    ).values_list("public_id", flat=True)
    assert shown == {str(p) for p in wanted}
    assert len(shown) == 2
    event = AuditEvent.objects.filter(action=AuditAction.SECTION_VIEW).latest("id")
    assert event.detail["filters"] == {"code": hba1c.code, "from": "2026-01-01"}
    assert "Clear the filters" in main_html(response)


def test_a_date_that_is_not_a_date_is_a_clear_error_and_shows_nothing(
    client: Client, registered_gp: Any, record: Patient
) -> None:
    response = _results(client, registered_gp, record, to="18/11/2026")
    assert response.status_code == 400
    assert "Those dates could not be read" in main_html(response)
    assert not shown_entries(response)


def test_a_trend_charts_words_from_a_feed_are_escaped_in_its_svg() -> None:
    # The chart is written in Python (Trend.svg), not by the template: it must escape
    # what a feed sent as the template's autoescape did.
    when = datetime.datetime(2026, 1, 5, 9, 30, tzinfo=datetime.UTC)
    point = TrendPoint(
        x=60.0, y=40.0, value=5.0, when=when, when_shown="5 Jan 2026 09:30",
        shown='5 <b>"mmol"</b>', abnormal=True,
    )  # fmt: skip
    trend = Trend(
        title="Glucose <script>alert('x')</script> & co", unit='mmol/L"><x', points=(point,),
        band=(30.0, 20.0), low=4.0, high=6.0, y_ticks=(("40.0", "<5>"),),
        x_ticks=(("60.0", "start", "5 Jan 2026"),),
    )  # fmt: skip
    svg = str(trend.svg)
    for raw in ("<script>", "<b>", '"><x'):
        assert raw not in svg
    assert "Glucose &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in svg
    assert "mmol/L&quot;&gt;&lt;x" in svg  # the y axis's title
    assert "&lt;5&gt;" in svg  # a tick
    assert "5 &lt;b&gt;&quot;mmol&quot;&lt;/b&gt; on 5 Jan 2026 09:30" in svg  # the aria-label
    assert 'fill="#d5281b"' in svg  # outside the range: red
    assert "<title>Reference range</title>" in svg
