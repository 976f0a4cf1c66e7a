"""Governance: an organisation's privacy officer audits its own staff's accesses to anyone.

Beside the record-holder view (accesses to people registered with the
organisation and to data it contributed, still the default), a non-programme
privacy officer can switch to "Your staff's accesses": every event whose
actor belonged to the organisation, about anyone. The trail outlives each
test, so every test names its own organisations (unique ODS codes) and
compares what the pages and API return with the trail itself.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from typing import Any

import pytest
from django.test import Client

from audit.models import AccessReview, ActorType, AuditAction, AuditEvent
from audit.selectors import AuditQuery, GovernanceScope, audit_events_page
from audit.trail import AuditActor, AuditSubject, audit_event_record
from sharedrecord.access import governance_viewer_for
from sharedrecord.models import Organisation
from tests.factories import client_for, fed_person, main_html, next_nhs_number
from tests.factories import make_officer as officer
from tests.factories import make_staff as staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("programme")]

ELSEWHERE = "Z81002"  # a practice none of these tests' officers belongs to


def new_ods() -> str:
    return f"ZS{uuid.uuid4().hex[:6].upper()}"


def access(
    org: str,
    *,
    gp: str,
    sources: tuple[str, ...] = (),
    action: AuditAction = AuditAction.RECORD_VIEW,
    nhs_number: str = "",
    detail: dict[str, Any] | None = None,
) -> int:
    """One access by a member of staff of `org` to a person registered with `gp`."""
    actor = AuditActor(type=ActorType.USER, name=f"clinician.{org.lower()}", org_ods=org, role="gp")
    subject = AuditSubject(nhs_number=nhs_number or next_nhs_number(), gp_ods=gp)
    return audit_event_record(
        action=action, actor=actor, subject=subject, source_ods=sources, detail=detail
    )


def glass(org: str, *, gp: str) -> int:
    """A break-glass access, flagged for review, by a member of staff of `org`."""
    return access(
        org, gp=gp, action=AuditAction.BREAK_GLASS,
        detail={"review": True, "reason_code": "OVRER", "reason_text": "Collapsed in clinic"},
    )  # fmt: skip


def newest_first(events: Any) -> list[int]:
    return [e.id for e in events.order_by("-occurred_at", "-id")]


def api_ids(client: Client, **params: str) -> list[int]:
    response = client.get("/api/v1/audit/events", params)
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def rows_shown(html: str) -> list[str]:
    """The event ids linked from a results table, in order (the links carry the scope)."""
    return re.findall(r'href="/governance/events/(\d+)(?:\?scope=\w+)?"', html)


def last_search_by(user: Any) -> AuditEvent:
    return AuditEvent.objects.filter(actor_name=user.username).order_by("-occurred_at", "-id")[0]


class Borough:
    """Our practice's staff and another organisation's, reading people registered here and there."""

    def __init__(self) -> None:
        self.ours = new_ods()
        self.theirs = new_ods()
        self.officer = officer(self.ours, "gp-practice")
        self.ours_elsewhere = access(self.ours, gp=ELSEWHERE, sources=("ZAC01",))
        self.ours_sign_in = access(self.ours, gp="", action=AuditAction.SIGN_IN)
        self.theirs_elsewhere = access(self.theirs, gp=ELSEWHERE, sources=("ZAC01",))
        self.theirs_ours = access(self.theirs, gp=self.ours)  # a person registered with us

    def staff_view(self) -> list[int]:
        return newest_first(AuditEvent.objects.filter(actor_org_ods=self.ours))

    def holder_view(self) -> list[int]:
        return newest_first(GovernanceScope(holder_ods=self.ours).events())


@pytest.fixture
def borough(db: None) -> Borough:
    return Borough()


# ------------------------------------------------------------------ who holds which scope


def test_a_practice_officer_holds_both_views_and_the_programme_the_whole_trail() -> None:
    ours = new_ods()
    practice = governance_viewer_for(officer(ours, "gp-practice"))
    assert practice is not None
    assert practice.scope == GovernanceScope(holder_ods=ours)  # the default is unchanged
    assert practice.scopes == (GovernanceScope(holder_ods=ours), GovernanceScope(staff_ods=ours))
    assert practice.in_scope("staff").scope == GovernanceScope(staff_ods=ours)
    programme = governance_viewer_for(officer())
    assert programme is not None
    assert programme.scopes == (GovernanceScope(),)
    assert programme.in_scope("staff").scope.whole_trail  # the switch never narrows it
    assert governance_viewer_for(staff(ours, "gp-practice", "gp")) is None


@pytest.mark.parametrize("persona", ["registered_gp", "treating_clinician", "unrelated_clinician"])
def test_no_clinician_reads_the_trail_in_either_scope(
    persona: str, request: pytest.FixtureRequest
) -> None:
    clinician = client_for(request.getfixturevalue(persona))
    for scope in ("holder", "staff"):
        for url in ("/governance/events", "/governance/reviews", "/api/v1/audit/events",
                    "/api/v1/audit/events.csv", "/api/v1/audit/reviews"):  # fmt: skip
            assert clinician.get(url, {"scope": scope}).status_code == 403, (url, scope)


# ------------------------------------------------------------------ searches


def test_staff_scope_shows_our_staffs_accesses_to_anyone_and_no_one_elses(
    borough: Borough,
) -> None:
    api = client_for(borough.officer)
    staff_view = borough.staff_view()
    assert staff_view == [borough.ours_sign_in, borough.ours_elsewhere]
    assert api_ids(api, scope="staff") == staff_view
    assert borough.theirs_elsewhere not in staff_view
    assert borough.theirs_ours not in staff_view
    # Another organisation's staff stay out even when asked for by name.
    assert api_ids(api, scope="staff", organisation=borough.theirs) == []

    expected = [str(i) for i in borough.staff_view()]  # now with the officer's searches
    page = api.get("/governance/events", {"scope": "staff"})
    assert page.status_code == 200
    html = main_html(page)
    assert rows_shown(html) == expected
    ours = Organisation.objects.get(ods_code=borough.ours).name  # its name; its code on hover
    assert f"every access by staff and systems of {ours}, to anyone" in html
    assert f'href="/governance/events/{borough.ours_elsewhere}?scope=staff"' in html


def test_holder_scope_is_the_default_and_unchanged(borough: Borough) -> None:
    api = client_for(borough.officer)
    holder_view = borough.holder_view()
    assert holder_view == [borough.theirs_ours]
    assert api_ids(api) == holder_view
    assert api_ids(api, scope="holder") == holder_view
    html = main_html(api.get("/governance/events"))
    assert rows_shown(html) == [str(i) for i in holder_view]
    ours = Organisation.objects.get(ods_code=borough.ours).name
    assert f"accesses to people registered with {ours}" in html


def test_the_pages_show_a_switch_that_keeps_the_search(borough: Borough) -> None:
    api = client_for(borough.officer)
    html = main_html(api.get("/governance/events", {"scope": "staff", "action": "sign-in"}))
    switch = re.search(r'<nav[^>]*aria-label="Whose accesses".*?</nav>', html, flags=re.DOTALL)
    assert switch is not None
    tabs = switch.group(0)
    assert re.search(r'aria-current="page"><span[^>]*>Your staff&#x27;s accesses<', tabs)
    assert 'href="/governance/events?scope=holder&amp;action=sign-in"' in tabs
    assert 'name="scope" type="radio" value="staff" checked' in html
    assert rows_shown(html) == [str(borough.ours_sign_in)]

    home = main_html(api.get("/governance/"))
    assert 'name="scope" type="radio" value="holder" checked' in home
    assert 'value="staff">' in home


def test_the_programme_keeps_the_whole_trail_and_sees_no_switch(borough: Borough) -> None:
    reader = officer()
    api = client_for(reader)
    number = next_nhs_number()
    theirs = access(borough.theirs, gp=ELSEWHERE, nhs_number=number)
    assert api_ids(api, scope="staff", nhs_number=number) == [theirs]
    searched = last_search_by(reader)
    assert searched.detail["scope_kind"] == "whole-trail"
    html = main_html(api.get("/governance/events", {"scope": "staff", "nhs_number": number}))
    assert rows_shown(html) == [str(searched.id), str(theirs)]  # a search is about its person
    assert "Whose accesses" not in html
    assert "Whose accesses" not in main_html(api.get("/governance/"))


def test_the_searchs_own_audit_event_names_the_scope(borough: Borough) -> None:
    api = client_for(borough.officer)
    shown = api_ids(api, scope="staff")
    assert last_search_by(borough.officer).detail == {
        "via": "api", "filters": {}, "shown": len(shown), "page": False,
        "scope": borough.ours, "scope_kind": "staff",
    }  # fmt: skip
    api.get("/governance/events")
    searched = last_search_by(borough.officer)
    assert searched.action == AuditAction.AUDIT_QUERY
    assert (searched.detail["scope"], searched.detail["scope_kind"]) == (borough.ours, "holder")


def test_paging_in_staff_scope_neither_repeats_nor_skips_while_events_arrive() -> None:
    ours = new_ods()
    reader = officer(ours, "gp-practice")
    for _ in range(120):
        access(ours, gp=ELSEWHERE)
    expected = newest_first(AuditEvent.objects.filter(actor_org_ods=ours))
    api = client_for(reader)
    seen: list[int] = []
    url: str | None = "/api/v1/audit/events?scope=staff"
    pages = 0
    while url:
        body = api.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
        assert url is None or "scope=staff" in url
        pages += 1
        access(ours, gp=ELSEWHERE)  # newer than every page: never on a later one
    assert pages == 3
    # The officer's own searches are its staff's accesses too, written after each page.
    assert seen == expected

    html = main_html(api.get("/governance/events", {"scope": "staff"}))
    older = re.search(r'href="\?([^"]*after=[^"]*)"', html)
    assert older is not None
    assert "scope=staff" in older.group(1)
    assert 'href="/governance/events.csv?scope=staff"' in html


def test_a_staff_scope_page_is_one_query(django_assert_num_queries: Any) -> None:
    ours = new_ods()
    for _ in range(3):
        access(ours, gp=ELSEWHERE)
    scope = GovernanceScope(staff_ods=ours)
    with django_assert_num_queries(1) as captured:
        page = audit_events_page(scope=scope, query=AuditQuery(), size=2)
    assert '"actor_org_ods" = ' in captured.captured_queries[0]["sql"]
    assert len(page.events) == 2
    assert page.next_cursor is not None


# ------------------------------------------------------------------ export


def test_export_in_staff_scope_streams_our_staffs_accesses_and_names_the_scope(
    borough: Borough,
) -> None:
    client = client_for(borough.officer)
    for url in ("/governance/events.csv", "/api/v1/audit/events.csv"):
        response = client.get(url, {"scope": "staff"})
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
        rows = list(csv.DictReader(io.StringIO(body)))
        export = last_search_by(borough.officer)
        assert export.action == AuditAction.AUDIT_EXPORT
        assert (export.detail["scope"], export.detail["scope_kind"]) == (borough.ours, "staff")
        # The export is on the record before its first row is read, so it lists itself.
        assert [int(r["id"]) for r in rows] == borough.staff_view()
        assert rows[0]["id"] == str(export.id)
        assert {r["actor_org_ods"] for r in rows} == {borough.ours}
        assert str(borough.ours_elsewhere) in {r["id"] for r in rows}


# ------------------------------------------------------------------ a bad scope


@pytest.mark.parametrize("value", ["everyone", "STAFF", "whole-trail"])
def test_an_unknown_scope_is_a_400_and_searches_nothing(borough: Borough, value: str) -> None:
    client = client_for(borough.officer)
    for url in ("/api/v1/audit/events", "/api/v1/audit/events.csv", "/api/v1/audit/reviews"):
        response = client.get(url, {"scope": value})
        assert response.status_code == 400, url
        error = response.json()["error"]
        assert error["code"] == "invalid"
        assert "holder or staff" in error["fields"]["scope"][0]
    for url in ("/governance/events", "/governance/events.csv", "/governance/reviews"):
        response = client.get(url, {"scope": value})
        assert response.status_code == 400, url
        assert "Choose holder or staff for the scope." in main_html(response)
    fhir = client.get("/api/v1/audit/fhir/AuditEvent", {"scope": value})
    assert fhir.status_code == 400
    assert fhir.json()["resourceType"] == "OperationOutcome"
    event = client.get(f"/governance/events/{borough.ours_elsewhere}", {"scope": value})
    assert event.status_code == 400
    assert not AuditEvent.objects.filter(actor_name=borough.officer.username).exists()


def test_the_openapi_document_describes_the_scope_parameter() -> None:
    client = client_for(officer())
    paths = client.get("/api/schema/", {"format": "json"}).json()["paths"]
    for path in ("/api/v1/audit/events", "/api/v1/audit/events.csv", "/api/v1/audit/reviews"):
        (scope,) = [p for p in paths[path]["get"]["parameters"] if p["name"] == "scope"]
        assert scope["in"] == "query"
        assert scope["schema"]["enum"] == ["holder", "staff"]
        assert scope["schema"]["default"] == "holder"


# ------------------------------------------------------------------ reviews


def test_our_staffs_flagged_access_to_someone_registered_elsewhere_waits_for_us(
    borough: Borough,
) -> None:
    ours = glass(borough.ours, gp=ELSEWHERE)
    api = client_for(borough.officer)
    staff_queue = api.get("/api/v1/audit/reviews", {"scope": "staff"}).json()
    assert [r["id"] for r in staff_queue["results"]] == [ours]
    holder_queue = api.get("/api/v1/audit/reviews").json()
    assert ours not in [r["id"] for r in holder_queue["results"]]
    home = main_html(api.get("/governance/"))
    assert (
        'href="/governance/reviews?scope=staff" id="staff-review-count">'
        '<strong class="nhsuk-tag nhsuk-tag--orange">1</strong> access by your staff to review'
    ) in home

    queue = main_html(api.get("/governance/reviews", {"scope": "staff"}))
    assert f'href="/governance/events/{ours}?scope=staff"' in queue
    page = api.get(f"/governance/events/{ours}", {"scope": "staff"})
    assert page.status_code == 200
    assert 'href="/governance/reviews?scope=staff"' in main_html(page)
    saved = api.post(f"/governance/events/{ours}?scope=staff",
                     {"outcome": "justified", "note": "Clinic notes confirm the collapse"})  # fmt: skip
    assert saved.status_code == 302
    assert saved["Location"] == "/governance/reviews?scope=staff"
    (finding,) = AccessReview.objects.filter(event_id=ours)
    assert finding.outcome == "justified"
    reviewed = AuditEvent.objects.get(
        actor_name=borough.officer.username, action=AuditAction.AUDIT_REVIEW
    )
    assert (reviewed.detail["event"], reviewed.detail["scope_kind"]) == (ours, "staff")
    after = api.get("/api/v1/audit/reviews", {"scope": "staff"}).json()
    assert after["total"] == 0


def test_a_review_of_an_access_outside_both_scopes_is_refused(borough: Borough) -> None:
    outside = glass(borough.theirs, gp=ELSEWHERE)  # not our staff, not our patient or data
    api = client_for(borough.officer)
    refused = api.post("/api/v1/audit/reviews",
                       {"event": outside, "outcome": "not-justified", "note": "Not ours to judge"},
                       content_type="application/json")  # fmt: skip
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"]["event"]
    for scope in ("holder", "staff"):
        page = api.post(f"/governance/events/{outside}?scope={scope}",
                        {"outcome": "justified", "note": "Not ours to judge"})  # fmt: skip
        assert page.status_code == 404
        assert api.get(f"/governance/events/{outside}", {"scope": scope}).status_code == 404
    assert api.get(f"/api/v1/audit/fhir/AuditEvent/{outside}").status_code == 404
    assert not AccessReview.objects.filter(event_id=outside).exists()
    for scope in ("holder", "staff"):
        queue = api.get("/api/v1/audit/reviews", {"scope": scope}).json()["results"]
        assert outside not in [r["id"] for r in queue]


def test_a_break_glass_by_our_gp_through_the_real_pages_is_ours_to_see_and_review() -> None:
    """End to end: a GP of our practice breaks glass on someone registered with another."""
    ours = new_ods()
    patient = fed_person(key=f"staff{uuid.uuid4().hex[:6]}")  # registered with Z81001
    gp = staff(ours, "gp-practice", "gp")
    doctor = client_for(gp)
    broke = doctor.post(
        f"/access/{patient.public_id}/emergency",
        {"reason_code": "OVRER", "reason_text": "Collapsed in our waiting room, no records"},
    )
    assert broke.status_code == 302
    assert doctor.get(f"/record/{patient.public_id}/").status_code == 200
    by_gp = AuditEvent.objects.filter(actor_name=gp.username)
    about = newest_first(by_gp.filter(nhs_number=patient.nhs_number))
    assert {AuditAction.BREAK_GLASS, AuditAction.RECORD_VIEW} <= {e.action for e in by_gp}
    (flagged,) = by_gp.filter(detail__needs_review=True)

    api = client_for(officer(ours, "gp-practice"))
    assert api_ids(api, scope="staff", nhs_number=patient.nhs_number) == about
    assert api_ids(api, nhs_number=patient.nhs_number) == []  # not our patient or our data
    fhir = api.get("/api/v1/audit/fhir/AuditEvent", {"scope": "staff", "agent.name": gp.username})
    assert [int(e["resource"]["id"]) for e in fhir.json()["entry"]] == newest_first(by_gp)
    done = api.post("/api/v1/audit/reviews",
                    {"event": flagged.id, "outcome": "justified", "note": "Practice notes agree"},
                    content_type="application/json")  # fmt: skip
    assert done.status_code == 201, done.content
