"""The timeline: everything the viewer may see across sources, newest first, with filters."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent
from sharedrecord.models import Entry, Patient, RecordSection
from sharedrecord.record import SECTION_PAGE_SIZE
from tests.factories import (
    banner_entries,
    confirm_basis,
    feed_long_results,
    main_html,
    shown_entries,
)

pytestmark = pytest.mark.django_db


def _timeline(client: Client, user: Any, record: Patient, **params: str) -> Any:
    client.force_login(user)
    confirm_basis(client, record)
    return client.get(f"/record/{record.public_id}/timeline", params)


def test_the_timeline_lists_every_source_newest_first_and_audits_what_it_showed(
    client: Client, registered_gp: Any, record: Patient
) -> None:
    response = _timeline(client, registered_gp, record)
    assert response.status_code == 200
    shown = shown_entries(response)
    clinical = Entry.objects.filter(patient=record).exclude(section=RecordSection.DEMOGRAPHICS)
    sources = {e.source_org.ods_code for e in clinical.filter(public_id__in=shown)}
    assert {"Z81001", "ZAC01", "ZCM01", "ZSC01"} <= sources
    rows = re.findall(
        r'<tr role="row" class="nhsuk-table__row" data-entry="([0-9a-f-]{36})"', main_html(response)
    )
    when = {str(k): v for k, v in clinical.values_list("public_id", "effective_at")}
    dates = [d for d in (when[row] for row in rows) if d is not None]
    assert dates == sorted(dates, reverse=True)
    event = AuditEvent.objects.filter(action=AuditAction.SECTION_VIEW).latest("id")
    assert event.detail["section"] == "timeline"
    assert set(event.detail["entries"]) == shown | set(banner_entries(response))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"organisation": "ZAC01"}, {"ZAC01"}),
        ({"setting": "social-care"}, {"ZSC01"}),
        ({"kind": "results"}, None),
        ({"from": "2026-11-01", "to": "2026-11-30"}, None),
    ],
)
def test_the_timeline_filters_by_organisation_setting_kind_and_date(
    client: Client, registered_gp: Any, record: Patient, params: dict[str, str], expected: Any
) -> None:
    response = _timeline(client, registered_gp, record, **params)
    assert response.status_code == 200
    shown = Entry.objects.filter(public_id__in=shown_entries(response))
    assert shown.exists()
    if expected is not None:
        assert {e.source_org.ods_code for e in shown} == expected
    if "kind" in params:
        assert {e.section for e in shown} == {params["kind"]}
    if "from" in params:
        assert all(
            e.effective_at and e.effective_at.date().isoformat() >= "2026-11-01" for e in shown
        )
    event = AuditEvent.objects.filter(action=AuditAction.SECTION_VIEW).latest("id")
    assert event.detail["filters"] == params


def test_the_timeline_holds_only_what_the_role_may_see_and_refuses_a_bad_date(
    client: Client, social_worker: Any, record: Patient
) -> None:
    response = _timeline(client, social_worker, record)
    sections = {e.section for e in Entry.objects.filter(public_id__in=shown_entries(response))}
    assert sections
    assert "results" not in sections  # not part of what a social worker sees
    assert "Depressive disorder" not in response.content.decode()
    bad = client.get(f"/record/{record.public_id}/timeline", {"from": "yesterday"})
    assert bad.status_code == 400
    assert not shown_entries(bad)


def test_a_long_timeline_pages_newest_first_and_keeps_its_filters_on_newer_and_older(
    client: Client, registered_gp: Any, record: Patient
) -> None:
    feed_long_results(record, SECTION_PAGE_SIZE + 5)
    first = _timeline(client, registered_gp, record, kind="results")
    second = client.get(f"/record/{record.public_id}/timeline", {"kind": "results", "page": "2"})
    assert first.status_code == second.status_code == 200
    on_first, on_second = shown_entries(first), shown_entries(second)
    assert len(on_first) == SECTION_PAGE_SIZE
    assert on_second
    assert not on_first & on_second
    html = main_html(first)
    assert 'aria-label="Pages of the timeline"' in html
    assert 'href="?kind=results&amp;page=2"' in html  # "Older" keeps the filter
    assert "Newer" not in html
    assert 'href="?kind=results&amp;page=1"' in main_html(second)
    # Newest first: today's result on the first page, the oldest fed on the second.
    fed = Entry.objects.filter(patient=record, resource__code__coding__0__code="1000")
    newest = fed.get(resource__valueQuantity__value=0)
    oldest = fed.get(resource__valueQuantity__value=SECTION_PAGE_SIZE + 4)
    assert str(newest.public_id) in on_first
    assert str(oldest.public_id) in on_second
