"""Governance under hostile input: odd values are precise 400s, and every event is a valid
FHIR AuditEvent, whatever its detail holds.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.balp import audit_event_as_fhir
from audit.models import AuditAction, AuditEvent, AuditOutcome
from audit.trail import AuditActor, AuditSubject, audit_event_record
from sharedrecord.models import Organisation, User
from tests.factories import fed_person, main_html, next_nhs_number, signed_in

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("programme")]

PROGRAMME = "ZSR01"


@pytest.fixture
def officer() -> Client:
    """A programme privacy officer, signed in: reads the whole trail."""
    organisation, _ = Organisation.objects.get_or_create(
        ods_code=PROGRAMME, defaults={"name": "Programme", "kind": "other",
                                      "dsa_start": "2025-01-01"},
    )  # fmt: skip
    user = User.objects.create_user(
        f"po.{uuid.uuid4().hex[:8]}", organisation=organisation, role="privacy-officer"
    )
    return signed_in(Client(), user)


def audited_by(client: Client) -> int:
    user = client.session["_auth_user_id"]
    name = User.objects.get(pk=user).username
    return AuditEvent.objects.filter(actor_name=name).count()


def problems(officer: Client, urls: list[str], cases: list[Any], check: Any) -> dict[str, str]:
    """Each (url, case) whose answer fails `check`, and nothing searched (so nothing audited)."""
    found: dict[str, str] = {}
    for url in urls:
        for query, name in cases:
            if url.endswith(".csv") and name == "after":
                continue  # the export has no pages
            before = audited_by(officer)
            response = officer.get(url, query)
            try:
                check(response, name)
                assert audited_by(officer) == before, "searched"
            except (AssertionError, KeyError, TypeError, ValueError) as failed:
                body = getattr(response, "content", b"(streamed)")[:200]
                found[f"{url} {query!r}"[:120]] = f"{response.status_code} {failed!r} {body!r}"
    return found


# (query, the field the 400 must name)
ODD_QUERIES: list[tuple[dict[str, str], str]] = [
    ({"date_to": "9999-12-31"}, "date_to"),
    ({"date_from": "9999-12-31"}, "date_from"),
    ({"date_from": "0000-01-01"}, "date_from"),
    ({"date_to": "\uff12\uff10\uff12\uff10-01-01"}, "date_to"),
    ({"date_from": "01/02/2020"}, "date_from"),
    ({"date_to": "2020-01-01\x00"}, "date_to"),
    ({"nhs_number": "٩٤٣٤٧٦٥٩١٩"}, "nhs_number"),
    ({"user": "a\x00b"}, "user"),
    ({"organisation": "Z\x00"}, "organisation"),
    ({"action": "9434765919"}, "action"),
    ({"after": "not-a-cursor"}, "after"),
    ({"after": "2020-01-01T00:00:00+00:00_\uff11\uff12"}, "after"),
    ({"after": "2020-01-01T00:00:00_12"}, "after"),
    ({"after": f"2020-01-01T00:00:00+00:00_{'9' * 5000}"}, "after"),
]


def _error_shape(response: Any, field: str) -> None:
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["message"]
    assert field in error["fields"]
    assert "9434765919" not in error["message"]  # the value sent is not repeated


def _readable_page(response: Any, field: str) -> None:
    assert response.status_code == 400
    assert "There is a problem" in main_html(response)


def test_an_odd_governance_query_is_a_400_in_the_api_error_shape(officer: Client) -> None:
    urls = ["/api/v1/audit/events", "/api/v1/audit/events.csv"]
    assert problems(officer, urls, ODD_QUERIES, _error_shape) == {}


def test_an_odd_governance_query_on_the_pages_is_a_400_with_a_readable_message(
    officer: Client,
) -> None:
    urls = ["/governance/events", "/governance/events.csv"]
    assert problems(officer, urls, ODD_QUERIES, _readable_page) == {}


# (query, the parameter the OperationOutcome must name)
ODD_FHIR_QUERIES: list[tuple[dict[str, Any], str]] = [
    ({"date": "le9999-12-31"}, "date"),
    ({"date": "ge0000-01-01"}, "date"),
    ({"date": "ge\uff12\uff10\uff12\uff10-01-01"}, "date"),
    ({"date": "gt2020-01-01"}, "date"),
    ({"date": ["ge2020-01-01", "ge2021-01-01"]}, "date"),
    ({"patient.identifier": "https://fhir.nhs.uk/Id/nhs-number|٩٤٣٤٧٦٥٩١٩"}, "patient.identifier"),
    ({"patient.identifier": "urn:other|9434765919"}, "patient.identifier"),
    ({"patient.identifier": "9434765910"}, "patient.identifier"),
    ({"agent.name": "x\x00"}, "agent.name"),
    ({"_count": "²"}, "_count"),
    ({"_after": "garbage"}, "_after"),
    ({"scope": "everyone"}, "scope"),
]


def _operation_outcome(response: Any, parameter: str) -> None:
    assert response.status_code == 400
    body = response.json()
    OperationOutcome.model_validate(body)
    (issue,) = body["issue"]
    assert issue["code"] in ("value", "invalid")
    assert issue["expression"] == [f"http.{parameter}"]
    assert parameter in issue["diagnostics"]
    assert "9434765910" not in issue["diagnostics"]


def test_an_odd_fhir_audit_event_search_is_a_400_operation_outcome(officer: Client) -> None:
    urls = ["/api/v1/audit/fhir/AuditEvent"]
    assert problems(officer, urls, ODD_FHIR_QUERIES, _operation_outcome) == {}


def test_a_date_range_at_the_edges_of_the_calendar_still_answers(officer: Client) -> None:
    for query in ({"date_from": "0001-01-01", "date_to": "9998-12-31"},):
        assert officer.get("/api/v1/audit/events", query).status_code == 200
        assert officer.get("/governance/events", query).status_code == 200
    both = officer.get("/api/v1/audit/fhir/AuditEvent", {"date": ["ge0001-01-01", "le9998-12-31"]})
    assert both.status_code == 200


# ------------------------------------------------------------------ every event, valid FHIR


def hostile_details() -> list[dict[str, Any]]:
    """Detail shapes the trail holds (and a few it might): numbers, lists, nesting, nulls."""
    return [
        {"entries": 12},
        {"entries": [str(uuid.uuid4()), "not a uuid", 7, None, {"x": 1}]},
        {"entries": None, "section": "", "withheld": 0},
        {"entries": "abc", "section": {"nested": [1, 2]}, "withheld": True},
        {"kind": "   ", "reason_code": "OVRER", "break_glass": False, "self_claimed": None},
        {"section": "x" * 5000, "kind": "\u202e\ud7ff\t"},
        {},
    ]


def test_every_kind_of_event_in_the_trail_is_a_valid_fhir_audit_event(officer: Client) -> None:
    fed_person(key=f"balp{uuid.uuid4().hex[:6]}")  # feed, processing and match events
    # The feeds' own events (their `entries` is a count) in an unfiltered search.
    newest = officer.get("/api/v1/audit/fhir/AuditEvent")
    assert newest.status_code == 200, newest.content[:300]
    for entry in newest.json()["entry"]:
        FhirAuditEvent.model_validate(entry["resource"])
    feed = AuditEvent.objects.filter(action=AuditAction.FEED_RECEIVED).latest("id")
    assert isinstance(feed.detail["entries"], int)
    actor = AuditActor.system("balp-test", org_ods="ZAC01")
    details = hostile_details()
    for i, action in enumerate(AuditAction):
        for outcome in AuditOutcome:
            audit_event_record(
                action=action, actor=actor, outcome=outcome, purpose=["", "TREAT", "x y"][i % 3],
                subject=AuditSubject(nhs_number=next_nhs_number()),
                detail=details[i % len(details)],
            )  # fmt: skip
    kinds: set[str] = set()
    url: str | None = "/api/v1/audit/fhir/AuditEvent"
    pages = 0
    while url and pages < 8:  # the newest 400 events: everything above, and the feeds
        response = officer.get(url)
        assert response.status_code == 200, response.content[:300]
        body = response.json()
        Bundle.model_validate(body)
        for entry in body["entry"]:
            FhirAuditEvent.model_validate(entry["resource"])
            kinds |= {s["code"] for s in entry["resource"]["subtype"]}
        url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
        pages += 1
    assert set(AuditAction.values) <= kinds
    one = officer.get(f"/api/v1/audit/fhir/AuditEvent/{feed.id}")
    assert one.status_code == 200
    FhirAuditEvent.model_validate(one.json())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
DETAIL_KEYS = st.sampled_from(
    ["entries", "section", "withheld", "break_glass", "reason_code", "kind", "self_claimed",
     "review", "via"]
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    action=st.sampled_from([*AuditAction.values, "retired-action"]),
    outcome=st.sampled_from([*AuditOutcome.values, "odd"]),
    detail=st.dictionaries(DETAIL_KEYS | st.text(max_size=8), JSON, max_size=6) | JSON,
    text=st.text(max_size=20),
    when=st.datetimes(
        min_value=datetime.datetime(1, 1, 2),
        max_value=datetime.datetime(9998, 12, 30),
        timezones=st.just(datetime.UTC),
    ),
)
def test_any_row_renders_as_a_valid_fhir_audit_event(
    action: str, outcome: str, detail: Any, text: str, when: datetime.datetime
) -> None:
    event = AuditEvent(
        id=1, occurred_at=when or timezone.now(), action=action, outcome=outcome,
        actor_type="user", actor_id=uuid.uuid4(), actor_name=text, actor_role=text,
        actor_role_code=text, actor_org_ods=text, nhs_number=text, patient_gp_ods="",
        source_ods=[], purpose=text, detail=detail, request_id=text, client_address=None,
    )  # fmt: skip
    FhirAuditEvent.model_validate(audit_event_as_fhir(event))


def test_an_event_number_beyond_the_trail_is_not_found_and_a_review_of_it_refused(
    officer: Client,
) -> None:
    huge = 10**30
    assert officer.get(f"/governance/events/{huge}").status_code == 404
    read = officer.get(f"/api/v1/audit/fhir/AuditEvent/{huge}")
    assert read.status_code == 404
    assert read.json()["resourceType"] == "OperationOutcome"
    review = officer.post(
        "/api/v1/audit/reviews", {"event": huge, "outcome": "justified", "note": "Checked."},
        content_type="application/json",
    )  # fmt: skip
    assert review.status_code == 400
    assert review.json()["error"]["code"] == "invalid"
