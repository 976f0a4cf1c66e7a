"""Query-count guards on the read paths (STYLE.md section 13): an N+1 fails here.

Each bound is today's count for the module's fed person (every partner's feed).
A change that needs more queries raises the bound here, on purpose and reviewed;
one that reads a row per entry, per source or per event fails.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from sharedrecord.models import Entry, Patient, RecordSection, User
from sharedrecord.notifications.backport import PAYLOAD_CONTENT, topic_url
from sharedrecord.notifications.dispatch import notification_events_dispatch
from sharedrecord.notifications.models import Subscription
from tests.factories import (
    NHS,
    PROGRAMME_ODS,
    client_for,
    confirm_basis,
    feed,
    make_credential,
    make_officer,
    next_nhs_number,
    partner,
    shown_entries,
    signed_in,
)
from tests.fhirapi import fhir_get, partner_token, staff_token
from tests.notifications.feeds import builder, every_kind_bundle

pytestmark = pytest.mark.django_db

PARTNER_ODS = "ZAC01"  # the acute trust, a feeding partner

# Today's counts. The record pages read the basis, the policy, the entries and
# the sources once each (the summary's lists in two queries, the sources and the
# withheld count in one scan, kept until the record changes: the bound is for a
# page that has to count), and write one audit event (with its chain head).
# An API page is one statement for its entries, whatever the page size (the
# first page's withheld flag is asked in it too). A bearer token is
# one query with its application, account and organisation; an audit event two
# statements (its chain head, then the row and the head moved on together).
# The summary and $everything ask once which pull sources to ask live (issue 25).
# A section and a document read the banner's allergies, alerts and care plans in one
# more query (the summary has them already); a document also reads the registered
# practice for the banner.
# A page writes no session (sharedrecord/sessions.py renews it at most once a minute;
# these guards' client renewed it at sign-in). A summary or section whose sources panel
# is not in the cache counts it: one query more than one that finds it there (the
# cache is shared with the tests running beside these, which may empty it).
SUMMARY = 19
SECTION = {section: 19 for section in RecordSection.values}
DOCUMENT = 15
TIMELINE = 18
FHIR_PATIENT_READ = 7
FHIR_PATIENT_SEARCH = 5
FHIR_EVERYTHING = 9
FHIR_ENTRY_SEARCH = 8
# Governance pages read the names of the staff and organisations they show in two
# queries (audit.directory), whatever the number of events.
GOVERNANCE_SEARCH = 13
GOVERNANCE_EVENT = 13
FHIR_EVERYTHING_NEXT = 8
FHIR_ENTRY_READ = 9
# A partner system's $everything (client credentials): the token, the person, the
# relationships (two), the page, and the audit event (two).
FHIR_EVERYTHING_SYSTEM = 7
SEARCH_PAGE = 13
BASIS_PAGE = 15
GOVERNANCE_HOME = 7
GOVERNANCE_SUBJECT_ACCESS = 17
GOVERNANCE_REVIEWS = 17
GOVERNANCE_API_SEARCH = 14
GOVERNANCE_API_REVIEWS = 15
GOVERNANCE_API_SUBJECT_ACCESS = 14
GOVERNANCE_FHIR_SEARCH = 14
GOVERNANCE_FHIR_READ = 15
# A partner's Subscription and its $status: its token and the subscription. Its $events
# (each event's full resource, under the policy): the deliveries, their entries, and per
# person the relationships and the served texts, then one audit write for them all.
SUBSCRIPTION_READ = 2
SUBSCRIPTION_STATUS = 2
SUBSCRIPTION_EVENTS = 11
# The in-app list of changes: the viewer, their organisation's notices (one query for
# the page of them, with their people), their entries, two queries for each set of
# relationships the notices were told under (the policy; the module's people make two
# sets), the look moved on, the audit write.
NOTIFICATIONS_PAGE = 21


@pytest.fixture
def gp(client: Client, registered_gp: User, record: Patient) -> Client:
    client.force_login(registered_gp)
    assert confirm_basis(client, record).status_code == 302
    return client


@pytest.fixture
def token(registered_gp: User) -> str:
    return staff_token(Client(), registered_gp)


def test_the_record_summary(
    gp: Client, record: Patient, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(SUMMARY):
        response = gp.get(f"/record/{record.public_id}/")
    assert response.status_code == 200
    assert len(shown_entries(response)) >= 10  # the bound is for a full page


@pytest.mark.parametrize("section", RecordSection.values)
def test_each_record_section(
    gp: Client, record: Patient, section: str, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(SECTION[section]):
        response = gp.get(f"/record/{record.public_id}/{section}")
    assert response.status_code == 200


def test_the_timeline(gp: Client, record: Patient, django_assert_max_num_queries: Any) -> None:
    with django_assert_max_num_queries(TIMELINE):
        response = gp.get(f"/record/{record.public_id}/timeline")
    assert response.status_code == 200
    assert len(shown_entries(response)) >= 10  # the bound is for a full page


def test_a_document(gp: Client, record: Patient, django_assert_max_num_queries: Any) -> None:
    document = Entry.objects.get(patient=record, resource_type="DocumentReference")
    with django_assert_max_num_queries(DOCUMENT):
        response = gp.get(f"/record/{record.public_id}/documents/{document.public_id}")
    assert response.status_code == 200


def test_fhir_patient_read(
    client: Client, token: str, record: Patient, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(FHIR_PATIENT_READ):
        response = fhir_get(client, token, f"Patient/{record.public_id}")
    assert response.status_code == 200


def test_fhir_patient_search(
    client: Client, token: str, record: Patient, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(FHIR_PATIENT_SEARCH):
        response = fhir_get(client, token, "Patient", {"identifier": f"{NHS}|{record.nhs_number}"})
    assert response.status_code == 200
    assert response.json_body["total"] == 1


def test_fhir_everything(
    client: Client, token: str, record: Patient, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(FHIR_EVERYTHING):
        response = fhir_get(client, token, f"Patient/{record.public_id}/$everything")
    assert response.status_code == 200
    assert len(response.json_body["entry"]) >= 10


def test_fhir_everything_for_a_partner_system(
    client: Client, record: Patient, django_assert_max_num_queries: Any
) -> None:
    token = partner_token(Client(), partner(PARTNER_ODS))  # its session cookie is not kept
    with django_assert_max_num_queries(FHIR_EVERYTHING_SYSTEM):
        response = fhir_get(client, token, f"Patient/{record.public_id}/$everything")
    assert response.status_code == 200
    assert len(response.json_body["entry"]) >= 10


def test_fhir_entry_search(
    client: Client, token: str, record: Patient, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(FHIR_ENTRY_SEARCH):
        response = fhir_get(client, token, "Observation", {"patient": str(record.public_id)})
    assert response.status_code == 200
    assert len(response.json_body["entry"]) >= 3


def test_governance_search_and_event(
    gp: Client, record: Patient, settings: Any, django_assert_max_num_queries: Any
) -> None:
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME_ODS]
    gp.get(f"/record/{record.public_id}/")  # one more event about the person
    officer = client_for(make_officer())
    with django_assert_max_num_queries(GOVERNANCE_SEARCH):
        response = officer.get("/governance/events", {"nhs_number": record.nhs_number})
    assert response.status_code == 200
    assert response.content.decode().count('href="/governance/events/') >= 5
    event = AuditEvent.objects.filter(patient_id=record.public_id).order_by("-id")[0]
    with django_assert_max_num_queries(GOVERNANCE_EVENT):
        response = officer.get(f"/governance/events/{event.id}")
    assert response.status_code == 200


def test_fhir_everything_next_page(
    client: Client, token: str, record: Patient, django_assert_max_num_queries: Any
) -> None:
    first = fhir_get(client, token, f"Patient/{record.public_id}/$everything", {"_count": "3"})
    (next_url,) = [lk["url"] for lk in first.json_body["link"] if lk["relation"] == "next"]
    with django_assert_max_num_queries(FHIR_EVERYTHING_NEXT):
        response = fhir_get(client, token, next_url.split("/fhir/R4/", 1)[1])
    assert response.status_code == 200
    assert len(response.json_body["entry"]) == 3


def test_fhir_entry_read(
    client: Client, token: str, record: Patient, django_assert_max_num_queries: Any
) -> None:
    entry = Entry.objects.filter(patient=record, resource_type="Observation").first()
    assert entry is not None
    with django_assert_max_num_queries(FHIR_ENTRY_READ):
        response = fhir_get(client, token, f"Observation/{entry.public_id}")
    assert response.status_code == 200


def test_fhir_search_with_provenance(
    client: Client, token: str, record: Patient, django_assert_max_num_queries: Any
) -> None:
    params = {"patient": str(record.public_id), "_revinclude": "Provenance:target"}
    with django_assert_max_num_queries(FHIR_ENTRY_SEARCH):
        response = fhir_get(client, token, "Observation", params)
    assert response.status_code == 200
    modes = [e["search"]["mode"] for e in response.json_body["entry"]]
    assert modes.count("include") == modes.count("match") >= 3


def test_fhir_patient_search_by_demographics(
    client: Client, token: str, record: Patient, django_assert_max_num_queries: Any
) -> None:
    assert record.birth_date is not None
    params = {"family": record.family_name, "birthdate": record.birth_date.isoformat()}
    with django_assert_max_num_queries(FHIR_PATIENT_SEARCH):
        response = fhir_get(client, token, "Patient", params)
    assert response.status_code == 200
    assert response.json_body["total"] >= 1


def test_the_search_and_basis_pages(
    client: Client, registered_gp: User, record: Patient, django_assert_max_num_queries: Any
) -> None:
    signed_in(client, registered_gp)
    with django_assert_max_num_queries(SEARCH_PAGE):
        response = client.post("/search", {"nhs_number": record.nhs_number})
    assert response.status_code == 200
    with django_assert_max_num_queries(BASIS_PAGE):
        response = client.get(f"/access/{record.public_id}/")
    assert response.status_code == 200


def test_the_governance_pages_and_api(
    gp: Client, record: Patient, settings: Any, django_assert_max_num_queries: Any
) -> None:
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME_ODS]
    gp.get(f"/record/{record.public_id}/")  # one more event about the person
    officer = client_for(make_officer())
    asked = {"nhs_number": record.nhs_number}
    event = AuditEvent.objects.filter(patient_id=record.public_id).order_by("-id")[0]
    for path, params, bound in (
        ("/governance/", {}, GOVERNANCE_HOME),
        ("/governance/reviews", {}, GOVERNANCE_REVIEWS),
        ("/governance/subject-access", asked, GOVERNANCE_SUBJECT_ACCESS),
        ("/api/v1/audit/events", asked, GOVERNANCE_API_SEARCH),
        ("/api/v1/audit/reviews", {}, GOVERNANCE_API_REVIEWS),
        ("/api/v1/audit/subject-access", asked, GOVERNANCE_API_SUBJECT_ACCESS),
        ("/api/v1/audit/fhir/AuditEvent", {"patient.identifier": record.nhs_number},
         GOVERNANCE_FHIR_SEARCH),
        (f"/api/v1/audit/fhir/AuditEvent/{event.id}", {}, GOVERNANCE_FHIR_READ),
    ):  # fmt: skip
        with django_assert_max_num_queries(bound):
            response = officer.get(path, params)
        assert response.status_code == 200, path


def test_a_subscriptions_read_status_and_events(client: Client) -> None:
    # A partner's catch-up read of its notifications ($events, each event with its full
    # resource) reads the same number of rows however many of a person's events it
    # holds: here one result, then two. It read six rows more per event.
    token = partner_token(client, partner("Z81001"), role="gp")
    made = client.post(
        "/fhir/R4/Subscription", data=json.dumps(_results_subscription()),
        content_type="application/fhir+json", HTTP_AUTHORIZATION=f"Bearer {token}",
    ).json()  # fmt: skip
    Subscription.objects.filter(public_id=made["id"]).update(status="active")
    number = next_nhs_number()
    feed(make_credential(partner("Z81001"))[0], builder(number, "Z81001", "q1").bundle())
    counts: list[list[int]] = []
    for key in ("q1", "q2"):
        feed(make_credential(partner("ZAC01"))[0], every_kind_bundle(number, "ZAC01", key=key))
        notification_events_dispatch()
        counts.append([])
        for path, params in (
            ("", {}),
            ("/$status", {}),
            ("/$events", {"eventsSinceNumber": "1", "content": "full-resource"}),
        ):
            with CaptureQueriesContext(connection) as queries:
                response = fhir_get(client, token, f"Subscription/{made['id']}{path}", params)
            assert response.status_code == 200, path
            counts[-1].append(len(queries))
    reports = [e for e in response.json_body["entry"] if e["resource"]["resourceType"] == (
        "DiagnosticReport"
    )]  # fmt: skip
    assert len(reports) == 2
    # Every event returned is audited, in order: one, then both again.
    told = AuditEvent.objects.filter(action="notification-sent", detail__type="query-event")
    assert [e.detail["event_number"] for e in told.order_by("id")] == [1, 1, 2]
    assert counts[0] == counts[1]
    bounds = [SUBSCRIPTION_READ, SUBSCRIPTION_STATUS, SUBSCRIPTION_EVENTS]
    assert all(count <= bound for count, bound in zip(counts[1], bounds, strict=True)), counts


def _results_subscription() -> dict[str, Any]:
    return {
        "resourceType": "Subscription", "status": "requested", "reason": "Our patients' results",
        "criteria": topic_url("result"),
        "channel": {
            "type": "rest-hook", "endpoint": "https://receiver.example/hook",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": "full-resource"}]},
        },
    }  # fmt: skip


def test_the_notifications_page(registered_gp: User) -> None:
    # A practice's list of what changed for its patients reads the same number of rows
    # however many changes it shows, for however many people: one hospital Bundle's for
    # one person, then two, then another person's too (the policy is asked once for all
    # the people told under the same relationships: notices_told).
    page = client_for(registered_gp)
    page.get("/notifications/")  # the first look is recorded; later ones move it on
    first, second = next_nhs_number(), next_nhs_number()
    for number, key in ((first, "p1"), (second, "p2")):
        feed(make_credential(partner("Z81001"))[0], builder(number, "Z81001", key).bundle())
    counts = []
    for number, key in ((first, "p1"), (first, "p2"), (second, "p3")):
        feed(make_credential(partner("ZAC01"))[0], every_kind_bundle(number, "ZAC01", key=key))
        notification_events_dispatch()
        with CaptureQueriesContext(connection) as queries:
            response = page.get("/notifications/")
        assert response.status_code == 200
        counts.append(len(queries))
    listed = response.content.decode()
    assert listed.count("Admitted to hospital") >= 3
    ours = {str(p.public_id) for p in Patient.objects.filter(nhs_number__in=(first, second))}
    assert len(ours) == 2
    assert ours <= set(re.findall(r'href="/access/([0-9a-f-]{36})/"', listed))
    assert counts[0] == counts[1] == counts[2], counts
    assert counts[2] <= NOTIFICATIONS_PAGE
