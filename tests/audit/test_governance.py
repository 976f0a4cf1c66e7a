"""Governance: who looked at this person, when and why, for each kind of privacy officer.

The trail is append-only and outlives each test, so every test makes its own
people and staff (unique NHS numbers and usernames) and compares what the
pages and API return with the trail itself.
"""

from __future__ import annotations

import csv
import datetime
import io
import re
import uuid
from typing import Any

import pytest
from django.utils import timezone
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle

from audit.models import AccessReview, AuditAction, AuditEvent, AuditOutcome
from audit.trail import AuditActor, AuditSubject, audit_event_record
from sharedrecord.models import Patient, User
from tests.factories import PROGRAMME_ODS as PROGRAMME
from tests.factories import (
    client_for,
    confirm_basis,
    fed_person,
    main_html,
    next_nhs_number,
)
from tests.factories import make_officer as officer
from tests.factories import make_staff as staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("programme")]


def events_for(nhs_number: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(nhs_number=nhs_number).order_by("-occurred_at", "-id"))


def rows_shown(html: str) -> list[str]:
    """The event ids linked from a results table, in order."""
    return re.findall(r'href="/governance/events/(\d+)"', html)


class Scene:
    """A fed person; a GP looks normally, an A&E doctor breaks glass, a nurse self-declares."""

    def __init__(self) -> None:
        self.patient: Patient = fed_person(key=f"gov{uuid.uuid4().hex[:6]}")
        self.gp = staff("Z81001", "gp-practice", "gp")
        self.ae = staff("ZAC01", "acute", "clinical-practitioner")
        self.nurse = staff("ZAC02", "acute", "nurse")
        pid = self.patient.public_id
        gp = client_for(self.gp)
        assert confirm_basis(gp, self.patient).status_code == 302
        assert gp.get(f"/record/{pid}/").status_code == 200
        ae = client_for(self.ae)
        response = ae.post(
            f"/access/{pid}/emergency",
            {"reason_code": "OVRER", "reason_text": "Unconscious in resus, no family present"},
        )
        assert response.status_code == 302
        assert ae.get(f"/record/{pid}/").status_code == 200
        nurse = client_for(self.nurse)
        claimed = confirm_basis(nurse, self.patient, claim="Ward nurse on the frailty unit")
        assert claimed.status_code == 302

    @property
    def nhs_number(self) -> str:
        return self.patient.nhs_number

    def flagged(self) -> list[AuditEvent]:
        return [e for e in events_for(self.nhs_number) if e.detail.get("needs_review")]


@pytest.fixture(scope="module")
def module_scene(module_transaction: None, django_db_blocker: Any) -> Scene:
    """The scene, built once per module; each test's own events roll back with the test."""
    with django_db_blocker.unblock():
        return Scene()


@pytest.fixture
def scene(module_scene: Scene, db: None) -> Scene:
    return module_scene


# ------------------------------------------------------------------ who may read the trail


@pytest.mark.parametrize("role", ["gp", "clinical-practitioner", "system-admin"])
def test_only_privacy_officers_read_the_trail(role: str) -> None:
    someone = client_for(staff(PROGRAMME, "other", role))
    for url in ("/governance/", "/governance/events", "/governance/reviews",
                "/governance/subject-access?nhs_number=9434765919"):  # fmt: skip
        assert someone.get(url).status_code == 403, url
    for url in ("/api/v1/audit/events", "/api/v1/audit/reviews", "/api/v1/audit/fhir/AuditEvent"):
        assert someone.get(url).status_code == 403, url


def test_a_superuser_is_not_a_privacy_officer() -> None:
    boss = User.objects.create_superuser("root." + uuid.uuid4().hex[:6], password="x" * 20)
    assert client_for(boss).get("/governance/").status_code == 403


# ------------------------------------------------------------------ searches


def test_search_by_person_shows_every_event_about_them_and_is_audited(scene: Scene) -> None:
    expected = [str(e.id) for e in events_for(scene.nhs_number)]
    assert len(expected) >= 6  # searches, identity views, bases, views
    searcher = officer()
    response = client_for(searcher).get("/governance/events", {"nhs_number": scene.nhs_number})
    assert response.status_code == 200
    assert rows_shown(main_html(response)) == expected
    html = main_html(response)
    assert "Emergency access (emergency treatment)" in html
    assert "Self-declared relationship: Ward nurse on the frailty unit" in html
    query = AuditEvent.objects.filter(actor_name=searcher.username).get()
    assert query.action == AuditAction.AUDIT_QUERY
    assert query.nhs_number == scene.nhs_number
    assert query.detail["shown"] == len(expected)
    assert query.detail["filters"] == {"nhs_number": True}


def test_search_by_user_by_organisation_by_action_and_outcome(scene: Scene) -> None:
    api = client_for(officer())

    def ids(**params: str) -> list[int]:
        response = api.get("/api/v1/audit/events", params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    by_user = list(
        AuditEvent.objects.filter(actor_name=scene.ae.username).order_by("-occurred_at", "-id")
    )
    assert ids(user=scene.ae.username) == [e.id for e in by_user]
    assert {e.action for e in by_user} >= {AuditAction.BREAK_GLASS, AuditAction.RECORD_VIEW}

    acute = ids(organisation="zac02", nhs_number=scene.nhs_number)
    assert acute
    assert all(e.actor_org_ods == "ZAC02" for e in AuditEvent.objects.filter(id__in=acute))
    (glass,) = ids(action=AuditAction.BREAK_GLASS, nhs_number=scene.nhs_number)
    assert AuditEvent.objects.get(id=glass).actor_name == scene.ae.username
    assert ids(outcome=AuditOutcome.DENIED, nhs_number=scene.nhs_number) == []


def test_search_by_date_range(scene: Scene) -> None:
    api = client_for(officer())
    today = timezone.localdate()
    yesterday = (today - datetime.timedelta(days=1)).isoformat()
    params = {"nhs_number": scene.nhs_number}
    expected = [e.id for e in events_for(scene.nhs_number)]
    in_range = api.get("/api/v1/audit/events", {**params, "date_from": today.isoformat(),
                                                "date_to": today.isoformat()}).json()  # fmt: skip
    assert [row["id"] for row in in_range["results"]] == expected
    before = api.get("/api/v1/audit/events", {**params, "date_to": yesterday}).json()
    assert before["results"] == []
    backwards = api.get("/api/v1/audit/events", {"date_from": today.isoformat(),
                                                 "date_to": yesterday})  # fmt: skip
    assert backwards.status_code == 400
    assert "end date must be on or after" in backwards.content.decode()


def test_a_bad_nhs_number_gets_a_clear_message_and_no_search() -> None:
    searcher = officer()
    response = client_for(searcher).get("/governance/events", {"nhs_number": "123"})
    assert response.status_code == 400
    assert "Enter a valid 10-digit NHS number" in main_html(response)
    assert not AuditEvent.objects.filter(actor_name=searcher.username).exists()


def test_pages_neither_repeat_nor_skip_events_while_new_ones_arrive() -> None:
    number = next_nhs_number()
    actor = AuditActor.system("pager-test", org_ods="ZAC01")

    def add(n: int) -> None:
        for _ in range(n):
            audit_event_record(action=AuditAction.API_READ, actor=actor,
                               subject=AuditSubject(nhs_number=number))  # fmt: skip

    add(120)
    original = [e.id for e in events_for(number)]
    api = client_for(officer())
    seen: list[int] = []
    url: str | None = f"/api/v1/audit/events?nhs_number={number}"
    pages = 0
    while url:
        body = api.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
        pages += 1
        add(7)  # newer events arrive between pages
    assert pages == 3
    assert seen == original


def test_export_streams_every_matching_event_as_csv_and_is_audited(scene: Scene) -> None:
    audit_event_record(
        action=AuditAction.SIGN_IN_FAILED, outcome=AuditOutcome.DENIED,
        actor=AuditActor.anonymous("=HYPERLINK(\"http://x\")"),
        subject=AuditSubject(nhs_number=scene.nhs_number),
    )  # fmt: skip
    exporter = officer()
    response = client_for(exporter).get("/governance/events.csv", {"nhs_number": scene.nhs_number})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    rows = list(csv.DictReader(io.StringIO(body)))
    export = AuditEvent.objects.get(actor_name=exporter.username)
    # The export is on the record before its first row is read, so it lists itself.
    assert [int(r["id"]) for r in rows] == [e.id for e in events_for(scene.nhs_number)]
    assert rows[0]["id"] == str(export.id)
    assert rows[1]["actor_name"] == '\'=HYPERLINK("http://x")'  # not run as a formula
    assert (export.action, export.nhs_number) == (AuditAction.AUDIT_EXPORT, scene.nhs_number)


# ------------------------------------------------------------------ record holders


def test_a_practice_privacy_officer_sees_its_patients_and_its_data_and_nothing_else(
    scene: Scene,
) -> None:
    practice = client_for(officer("Z81001", "gp-practice"))
    expected = [e.id for e in events_for(scene.nhs_number)
                if e.patient_gp_ods == "Z81001" or "Z81001" in e.source_ods]  # fmt: skip
    ours = practice.get("/api/v1/audit/events", {"nhs_number": scene.nhs_number}).json()
    assert [r["id"] for r in ours["results"]] == expected
    views = AuditEvent.objects.filter(id__in=expected, action=AuditAction.RECORD_VIEW)
    assert {e.actor_name for e in views} == {scene.gp.username, scene.ae.username}

    # Someone registered elsewhere, with no data from this practice.
    elsewhere = next_nhs_number()
    actor = AuditActor.system("holder-test", org_ods="ZAC01")
    hidden = audit_event_record(action=AuditAction.API_READ, actor=actor,
                                subject=AuditSubject(nhs_number=elsewhere, gp_ods="Z81002"),
                                source_ods=["ZAC01"])  # fmt: skip
    # Someone registered elsewhere who was shown data this practice contributed.
    contributed = audit_event_record(action=AuditAction.API_READ, actor=actor,
                                     subject=AuditSubject(nhs_number=elsewhere, gp_ods="Z81002"),
                                     source_ods=["ZAC01", "Z81001"])  # fmt: skip
    theirs = practice.get("/api/v1/audit/events", {"nhs_number": elsewhere}).json()
    assert [r["id"] for r in theirs["results"]] == [contributed]
    assert practice.get(f"/governance/events/{hidden}").status_code == 404
    assert practice.get(f"/api/v1/audit/fhir/AuditEvent/{hidden}").status_code == 404
    everything = practice.get("/api/v1/audit/events").json()["results"]
    # Not vacuous: the newest event the practice may see (the contributed one) is there.
    assert contributed in {r["id"] for r in everything}
    assert all(r["patient_gp_ods"] == "Z81001" or "Z81001" in r["source_ods"] for r in everything)
    assert AuditAction.SIGN_IN not in {r["action"] for r in everything}


def test_an_acute_trusts_privacy_officer_sees_only_accesses_to_its_data(scene: Scene) -> None:
    trust = client_for(officer("ZAC01", "acute"))
    results = trust.get("/api/v1/audit/events", {"nhs_number": scene.nhs_number}).json()
    expected = [e.id for e in events_for(scene.nhs_number) if "ZAC01" in e.source_ods]
    assert [r["id"] for r in results["results"]] == expected
    assert expected  # both record views showed the A&E attendance


def test_a_record_holders_whole_view_comes_from_its_index_and_pages_while_events_arrive() -> None:
    """Without a person or user, the view is read from the record holders' index.

    It must hold exactly what the scope's own rule (registered here OR data
    from here) finds in the trail, newest first, each event once, page after
    page while new events arrive.
    """
    from audit.selectors import AuditQuery, GovernanceScope, audit_events_page

    holder = f"ZH{uuid.uuid4().hex[:6].upper()}"
    actor = AuditActor.system("holder-index-test", org_ods="ZAC01")

    def add(gp: str, sources: list[str], action: AuditAction = AuditAction.API_READ) -> int:
        return audit_event_record(action=action, actor=actor, source_ods=sources,
                                  subject=AuditSubject(nhs_number=next_nhs_number(), gp_ods=gp))  # fmt: skip

    for _ in range(9):
        add(holder, [])  # registered here
        add("Z81002", ["ZAC01", holder])  # shown data from here
        add(holder, [holder, "ZAC01"], AuditAction.RECORD_VIEW)  # both: listed once
        add("Z81002", ["ZAC01"])  # neither
    scope = GovernanceScope(holder)
    rule = [e.id for e in scope.events().order_by("-occurred_at", "-id")]
    assert len(rule) == 27

    seen: list[int] = []
    page = audit_events_page(scope=scope, query=AuditQuery(), size=10)
    while True:
        seen += [e.id for e in page.events]
        add(holder, [])  # newer than every page: never shown on a later page
        if page.next_cursor is None:
            break
        page = audit_events_page(scope=scope, query=AuditQuery(), after=page.next_cursor, size=10)
    assert seen == rule

    # A filter the index cannot apply: small pages, so the index is read in several batches.
    record_views = [
        e.id
        for e in scope.events()
        .filter(action=AuditAction.RECORD_VIEW)
        .order_by("-occurred_at", "-id")
    ]
    assert len(record_views) == 9
    views: list[int] = []
    after = None
    while True:
        page = audit_events_page(
            scope=scope, query=AuditQuery(action=AuditAction.RECORD_VIEW), after=after, size=2
        )
        views += [e.id for e in page.events]
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert views == record_views
    today = timezone.localdate()
    tomorrow = today + datetime.timedelta(days=1)
    assert audit_events_page(scope=scope, query=AuditQuery(date_from=tomorrow)).events == []
    assert len(audit_events_page(scope=scope, query=AuditQuery(date_to=today)).events) == 30

    everything = [e.id for e in scope.events().order_by("-occurred_at", "-id")]
    assert len(everything) == 30
    practice_officer = client_for(officer(holder, "gp-practice"))
    through_api = practice_officer.get("/api/v1/audit/events").json()
    assert [r["id"] for r in through_api["results"]] == everything
    exported = practice_officer.get("/governance/events.csv")
    body = b"".join(exported.streaming_content).decode()  # type: ignore[attr-defined]
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(body))] == everything


# ------------------------------------------------------------------ the review queue


def test_break_glass_and_self_declared_accesses_wait_for_review(scene: Scene) -> None:
    flagged = scene.flagged()
    assert {e.action for e in flagged} == {AuditAction.BREAK_GLASS, AuditAction.ACCESS_BASIS}
    reviewer = client_for(officer())
    home = main_html(reviewer.get("/governance/"))
    queue = main_html(reviewer.get("/governance/reviews"))
    for event in flagged:
        assert f'href="/governance/events/{event.id}"' in queue
    gp_views = [e for e in events_for(scene.nhs_number) if e.actor_name == scene.gp.username]
    assert all(f'/governance/events/{e.id}"' not in queue for e in gp_views)
    shown_count = re.search(r'id="review-count"><strong[^>]*>(\d+)</strong> access', home)
    assert shown_count is not None  # the count is a tag of its own: visible on the card
    count = int(shown_count.group(1))
    assert count >= len(flagged)
    front = main_html(reviewer.get("/"))
    assert re.search(rf'id="unreviewed"><strong>{count}</strong> accesses to review', front)
    gp_front = main_html(client_for(scene.gp).get("/"))
    assert "to review" not in gp_front


def test_recording_findings(scene: Scene) -> None:
    glass, claimed = sorted(scene.flagged(), key=lambda e: e.action != AuditAction.BREAK_GLASS)
    user = officer()
    reviewer = client_for(user)
    api = client_for(user)
    before = api.get("/api/v1/audit/reviews").json()["total"]

    no_note = reviewer.post(f"/governance/events/{glass.id}", {"outcome": "justified", "note": ""})
    assert no_note.status_code == 400
    assert "Write a note saying why you reached this finding" in main_html(no_note)

    referred = reviewer.post(f"/governance/events/{glass.id}",
                             {"outcome": "referred", "note": "Asked the Caldicott Guardian"})  # fmt: skip
    assert referred.status_code == 302
    assert api.get("/api/v1/audit/reviews").json()["total"] == before  # still open

    done = api.post("/api/v1/audit/reviews", {"event": glass.id, "outcome": "justified",
                    "note": "Resus notes confirm the emergency"}, content_type="application/json")  # fmt: skip
    assert done.status_code == 201, done.content
    assert api.get("/api/v1/audit/reviews").json()["total"] == before - 1
    again = api.post("/api/v1/audit/reviews", {"event": glass.id, "outcome": "not-justified",
                     "note": "Changing my mind"}, content_type="application/json")  # fmt: skip
    assert again.status_code == 400
    assert "already been reviewed" in again.content.decode()

    findings = list(AccessReview.objects.filter(event_id=glass.id).order_by("reviewed_at"))
    assert [f.outcome for f in findings] == ["referred", "justified"]
    audited = AuditEvent.objects.filter(actor_name=user.username, action=AuditAction.AUDIT_REVIEW)
    assert [e.detail["outcome"] for e in audited.order_by("occurred_at")] == [
        "referred",
        "justified",
    ]
    assert all(e.nhs_number == scene.nhs_number for e in audited)
    page = main_html(reviewer.get(f"/governance/events/{glass.id}"))
    assert "Resus notes confirm the emergency" in page
    assert "Save finding" not in page

    ordinary = next(e for e in events_for(scene.nhs_number) if e.action == AuditAction.RECORD_VIEW)
    refused = api.post("/api/v1/audit/reviews", {"event": ordinary.id, "outcome": "justified",
                       "note": "Not a flagged access"}, content_type="application/json")  # fmt: skip
    assert refused.status_code == 400
    assert not AccessReview.objects.filter(event_id=ordinary.id).exists()
    assert claimed.id in [r["id"] for r in api.get("/api/v1/audit/reviews").json()["results"]]


def test_a_practice_officer_cannot_review_outside_its_scope() -> None:
    actor = AuditActor.system("review-scope", org_ods="ZAC01")
    elsewhere = audit_event_record(
        action=AuditAction.BREAK_GLASS, actor=actor,
        subject=AuditSubject(nhs_number=next_nhs_number(), gp_ods="Z81002"),
        detail={"review": True, "reason_code": "OVRER", "reason_text": "x" * 12},
    )  # fmt: skip
    practice = client_for(officer("Z81001", "gp-practice"))
    queue = practice.get("/api/v1/audit/reviews").json()["results"]
    assert elsewhere not in [r["id"] for r in queue]
    refused = practice.post("/api/v1/audit/reviews", {"event": elsewhere, "outcome": "justified",
                            "note": "Not mine to judge"}, content_type="application/json")  # fmt: skip
    assert refused.status_code == 400
    assert not AccessReview.objects.filter(event_id=elsewhere).exists()


# ------------------------------------------------------------------ subject access


def test_subject_access_report_says_who_when_where_role_why_and_emergency(scene: Scene) -> None:
    user = officer()
    response = client_for(user).get("/governance/subject-access",
                                    {"nhs_number": scene.nhs_number})  # fmt: skip
    assert response.status_code == 200
    html = main_html(response)
    assert 'media="print"' in response.content.decode()  # the print stylesheet
    for who in (scene.gp, scene.ae, scene.nurse):
        assert who.username in html
    assert "ZAC01" in html
    assert "clinical-practitioner" in html
    assert "Emergency access (emergency treatment): Unconscious in resus" in html
    assert "1 of them in an emergency without asking first" in html
    report = AuditEvent.objects.get(actor_name=user.username)
    assert (report.action, report.nhs_number) == (AuditAction.SUBJECT_ACCESS_REPORT,
                                                  scene.nhs_number)  # fmt: skip
    api = client_for(officer()).get("/api/v1/audit/subject-access",
                                     {"nhs_number": scene.nhs_number}).json()  # fmt: skip
    assert api["emergency_accesses"] == 1
    whos = {row["who"] for row in api["events"]}
    assert {scene.gp.username, scene.ae.username, scene.nurse.username, user.username} <= whos


# ------------------------------------------------------------------ FHIR AuditEvent


def test_fhir_audit_events_parse_and_follow_balp(scene: Scene) -> None:
    api = client_for(officer())
    expected = [e.id for e in events_for(scene.nhs_number)]
    response = api.get("/api/v1/audit/fhir/AuditEvent",
                       {"patient.identifier": f"https://fhir.nhs.uk/Id/nhs-number|{scene.nhs_number}"})  # fmt: skip
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json"
    body = response.json()
    Bundle.model_validate(body)  # every resource parses with fhir.resources
    assert body["type"] == "searchset"
    resources = [entry["resource"] for entry in body["entry"]]
    for resource in resources:
        FhirAuditEvent.model_validate(resource)
    assert [int(r["id"]) for r in resources] == expected
    view = next(r for r in resources
                if any(s["code"] == AuditAction.RECORD_VIEW for s in r["subtype"]))  # fmt: skip
    assert view["meta"]["profile"] == [
        "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead"
    ]
    assert view["action"] == "R"
    patient = next(e for e in view["entity"] if e.get("role", {}).get("code") == "1")
    assert patient["what"]["identifier"]["value"] == scene.nhs_number
    assert view["agent"][0]["who"]["display"] in (scene.gp.username, scene.ae.username)
    one = api.get(f"/api/v1/audit/fhir/AuditEvent/{view['id']}").json()
    assert FhirAuditEvent.model_validate(one).id == view["id"]
    unknown = api.get("/api/v1/audit/fhir/AuditEvent", {"subject": "x"})
    assert unknown.status_code == 400
    assert unknown.json()["resourceType"] == "OperationOutcome"
