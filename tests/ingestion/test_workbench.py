"""The data quality workbench: who sees which parked cases, what they see, and each decision."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from ingestion.models import FeedMessage, MatchQueueItem, ParkedDigest, ParkState
from ingestion.tasks import parked_digests_compose_task
from ingestion.workbench import parked_digests_compose, parked_overdue_count, parked_waiting_counts
from sharedrecord.access import DataQualityScope, data_quality_scope_for
from sharedrecord.models import Entry, Organisation, Patient, User
from tests.factories import (
    PROGRAMME_ODS,
    client_for,
    clinical_bundle,
    confirm_basis,
    feed,
    invalid_nhs_number,
    make_credential,
    make_optout,
    make_staff,
    next_nhs_number,
    parking_feed,
    partner,
)

pytestmark = pytest.mark.django_db

SECRET = "Zyxolimus clinic finding"  # clinical text that must never reach the workbench


@pytest.fixture(autouse=True)
def _programme(settings: Any) -> None:
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME_ODS]


def programme_officer() -> User:
    return make_staff(PROGRAMME_ODS, "other", "data-quality-officer")


def hospital_officer() -> User:
    partner("ZAC01")
    return make_staff("ZAC01", "acute", "data-quality-officer")


def parked_case(sender: str = "ZAC01", *, reason: str = "no-nhs-number") -> Any:
    """Feed a message that parks for the reason asked; return its case id and message."""
    credential, _ = make_credential(partner(sender))
    message = parking_feed(credential, reason, key=f"wb{next_nhs_number()}", text=SECRET)
    items = MatchQueueItem.objects.filter(message=message)
    assert {i.reason for i in items} == {reason}, message.issues
    return items[0].group, message


def receipt(message: FeedMessage) -> dict[str, Any]:
    _, token = make_credential(message.organisation)
    response = Client().get(
        f"/api/v1/feeds/receipts/{message.public_id}", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200
    return dict(response.json())


# ------------------------------------------------------------------ who sees what


def test_only_data_quality_officers_have_a_scope_and_the_programme_sees_everything() -> None:
    assert data_quality_scope_for(programme_officer()) == DataQualityScope(None)
    assert data_quality_scope_for(hospital_officer()) == DataQualityScope("ZAC01")
    assert data_quality_scope_for(make_staff("ZAC01", "acute", "clinical-practitioner")) is None
    assert data_quality_scope_for(make_staff(PROGRAMME_ODS, "other", "privacy-officer")) is None
    inactive = programme_officer()
    inactive.is_active = False
    assert data_quality_scope_for(inactive) is None


def test_an_organisations_officer_sees_only_what_its_own_feeds_parked() -> None:
    ours, _ = parked_case("ZAC01")
    theirs, _ = parked_case("ZCM01")
    hospital = client_for(hospital_officer())
    listing = hospital.get("/workbench/").content.decode()
    assert str(ours) in listing
    assert str(theirs) not in listing
    assert hospital.get(f"/workbench/{theirs}").status_code == 404
    programme = client_for(programme_officer()).get("/workbench/").content.decode()
    assert str(ours) in programme
    assert str(theirs) in programme


@pytest.mark.parametrize("role", ["clinical-practitioner", "privacy-officer", "system-admin"])
def test_other_roles_are_refused_and_the_refusal_is_audited(role: str) -> None:
    group, _ = parked_case()
    user = make_staff(PROGRAMME_ODS, "other", role)
    client = client_for(user)
    assert client.get("/workbench/").status_code == 403
    assert client.get(f"/workbench/{group}").status_code == 403
    assert client.get("/api/v1/workbench/cases").status_code == 403
    assert (
        AuditEvent.objects.filter(
            action="access-denied", actor_name=user.username, detail__area="data-quality-workbench"
        ).count()
        == 3
    )


def test_a_case_shows_what_was_sent_and_why_never_clinical_content_and_is_audited() -> None:
    group, _ = parked_case(reason="demographics-conflict")
    officer = programme_officer()
    page = client_for(officer).get(f"/workbench/{group}")
    assert page.status_code == 200
    html = page.content.decode()
    number = MatchQueueItem.objects.filter(group=group)[0].nhs_number_sent
    assert number in html
    assert "ELLISON" in html
    assert "1 Jan 1990" in html
    assert "Demographics disagree with the record" in html
    assert "Condition" in html
    assert SECRET not in html
    assert "38341003" not in html
    # The candidate the NHS number names, with its score: the birth date disagrees.
    assert 'id="candidates"' in html
    assert "birth-date" in html
    event = AuditEvent.objects.get(action="match-queue-view", actor_name=officer.username)
    assert event.nhs_number == number
    assert event.detail["case"] == str(group)
    assert event.detail["candidates"] == [str(Patient.objects.get(nhs_number=number).public_id)]
    assert event.source_ods == ["ZAC01"]
    api = client_for(officer).get(f"/api/v1/workbench/cases/{group}")
    assert api.status_code == 200
    assert SECRET not in api.content.decode()
    assert api.json()["candidates"][0]["score"] == 80  # all but the date of birth agree


def test_the_admin_no_longer_shows_a_parked_resource() -> None:
    group, _ = parked_case()
    item = MatchQueueItem.objects.filter(group=group, resource_type="Condition").get()
    root = User.objects.create_superuser("root.wb", password="x" * 20)
    page = client_for(root).get(f"/admin/ingestion/matchqueueitem/{item.pk}/change/")
    assert page.status_code == 200
    assert SECRET not in page.content.decode()


# ------------------------------------------------------------------ candidates


def test_candidates_are_found_by_name_date_of_birth_and_scored_by_postcode() -> None:
    credential, _ = make_credential(partner("ZAC01"))
    number = next_nhs_number()
    assert (
        feed(credential, clinical_bundle(number, key=f"cand{number}", text=SECRET)).status == "done"
    )
    group, _ = parked_case(reason="no-nhs-number")
    view = client_for(programme_officer()).get(f"/api/v1/workbench/cases/{group}").json()
    found = {c["nhs_number"]: c for c in view["candidates"]}
    assert number in found
    assert found[number]["score"] == 60  # name, date of birth, postcode, sex: no NHS number sent
    assert "nhs-number" not in found[number]["agreeing"]
    assert not found[number]["certain"]
    # Nothing was linked by the search itself.
    assert MatchQueueItem.objects.filter(group=group, state="parked").count() == 2


# ------------------------------------------------------------------ decisions


@pytest.mark.parametrize(
    "reason", ["no-nhs-number", "invalid-nhs-number", "demographics-conflict", "unknown-patient"]
)
def test_filing_a_case_stores_its_entries_as_a_feed_would_and_tells_the_sender(
    reason: str,
) -> None:
    group, message = parked_case(reason=reason)
    officer = programme_officer()
    number = next_nhs_number()
    page = client_for(officer).post(
        f"/workbench/{group}",
        {"decision": "file", "nhs_number": number, "note": "Checked with the ward by phone"},
    )
    assert page.status_code == 302
    patient = Patient.objects.get(nhs_number=number)
    stored = Entry.objects.filter(patient=patient, source_org=message.organisation)
    parked = MatchQueueItem.objects.filter(group=group)
    assert stored.count() == parked.count()
    assert {e.source_id for e in stored} == {i.source_id for i in parked}
    assert {i.state for i in parked} == {ParkState.FILED}
    assert all(i.resource == {} and i.filed_patient_id == patient.public_id for i in parked)
    body = receipt(message)
    assert body["counts"]["parked"] == 0
    assert body["counts"]["created"] >= stored.count()
    codes = [i["details"]["coding"][0]["code"] for i in body["outcome"]["issue"]]
    assert "parked-filed" in codes
    event = AuditEvent.objects.get(action="match-decision", actor_name=officer.username)
    assert event.detail["decision"] == "filed"
    assert event.patient_id == patient.public_id
    assert event.detail["case"] == str(group)


def test_filing_to_a_chosen_candidate_joins_their_record_and_flags_the_dispute() -> None:
    group, _ = parked_case(reason="demographics-conflict")
    number = MatchQueueItem.objects.filter(group=group)[0].nhs_number_sent
    patient = Patient.objects.get(nhs_number=number)
    response = client_for(programme_officer()).post(
        f"/api/v1/workbench/cases/{group}/file",
        {"candidate": str(patient.public_id), "reason": "Same person: birth date typo at ward"},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "filed"
    assert response.json()["patient"] == str(patient.public_id)
    assert Entry.objects.filter(patient=patient, resource_type="Condition").count() == 2
    assert {i.filed_patient_id for i in MatchQueueItem.objects.filter(group=group)} == {
        patient.public_id
    }


def test_filing_to_an_opted_out_person_stores_nothing() -> None:
    group, message = parked_case()
    number = next_nhs_number()
    make_optout(number, partner("Z81001"))
    client_for(programme_officer()).post(
        f"/workbench/{group}",
        {"decision": "file", "nhs_number": number, "note": "Checked with the ward by phone"},
    )
    assert not Patient.objects.filter(nhs_number=number).exists()
    assert {i.state for i in MatchQueueItem.objects.filter(group=group)} == {ParkState.BLOCKED}
    assert receipt(message)["counts"]["blocked"] == 2


def test_filing_needs_the_senders_agreement_a_reason_and_a_valid_number() -> None:
    group, _ = parked_case()
    client = client_for(programme_officer())
    short = client.post(
        f"/workbench/{group}", {"decision": "file", "nhs_number": next_nhs_number(), "note": "ok"}
    )
    assert short.status_code == 400
    assert "at least 10" in short.content.decode()
    bad = client.post(
        f"/workbench/{group}",
        {"decision": "file", "nhs_number": invalid_nhs_number(), "note": "Checked by phone call"},
    )
    assert bad.status_code == 400
    assert "valid 10-digit" in bad.content.decode()
    Organisation.objects.filter(ods_code="ZAC01").update(dsa_end=datetime.date(2025, 6, 1))
    ended = client.post(
        f"/api/v1/workbench/cases/{group}/file",
        {"nhs_number": next_nhs_number(), "reason": "Checked by phone call"},
        content_type="application/json",
    )
    assert ended.status_code == 409
    assert ended.json()["error"]["code"] == "agreement_inactive"
    assert MatchQueueItem.objects.filter(group=group, state="parked").count() == 2


def test_rejecting_tells_the_sender_on_its_receipt_and_the_partner_api() -> None:
    group, message = parked_case()
    client = client_for(hospital_officer())
    response = client.post(
        f"/workbench/{group}", {"decision": "reject", "code": "test-data", "note": "Ward test"}
    )
    assert response.status_code == 302
    items = MatchQueueItem.objects.filter(group=group)
    assert {i.state for i in items} == {ParkState.REJECTED}
    assert all(i.resource == {} for i in items)
    body = receipt(message)
    assert body["counts"]["rejected"] == 2
    assert body["counts"]["parked"] == 0
    rejected = [
        i
        for i in body["outcome"]["issue"]
        if i["details"]["coding"][0]["code"] == "parked-rejected"
    ]
    assert len(rejected) == 1
    assert "test-data" in rejected[0]["details"]["text"]
    assert "Ward test" not in json.dumps(body)  # the officer's note is not sent
    _, token = make_credential(message.organisation)
    parked = Client().get("/api/v1/feeds/parked", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    (case,) = [c for c in parked["cases"] if c["id"] == str(group)]
    assert (case["state"], case["decision"], case["reason"]) == (
        "rejected", "test-data", "no-nhs-number",
    )  # fmt: skip
    assert {e["resourceType"] for e in case["entries"]} == {"Patient", "Condition"}
    assert SECRET not in json.dumps(parked)


def test_asking_for_a_correction_tells_the_sender_what_to_correct() -> None:
    group, message = parked_case(reason="invalid-nhs-number")
    response = client_for(programme_officer()).post(
        f"/api/v1/workbench/cases/{group}/correction",
        {"code": "check-nhs-number"},
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response.json()["state"] == "correction-requested"
    body = receipt(message)
    (issue,) = [
        i
        for i in body["outcome"]["issue"]
        if i["details"]["coding"][0]["code"] == "parked-correction-requested"
    ]
    assert "check-nhs-number" in issue["details"]["text"]
    assert "send them again" in issue["details"]["text"]
    _, token = make_credential(message.organisation)
    parked = (
        Client()
        .get(
            "/api/v1/feeds/parked?state=correction-requested", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
        .json()
    )
    assert [c["id"] for c in parked["cases"]] == [str(group)]


def test_a_case_is_decided_once() -> None:
    group, _ = parked_case()
    client = client_for(programme_officer())
    assert client.post(
        f"/api/v1/workbench/cases/{group}/reject", {"code": "duplicate"},
        content_type="application/json",
    ).status_code == 200  # fmt: skip
    again = client.post(
        f"/api/v1/workbench/cases/{group}/file",
        {"nhs_number": next_nhs_number(), "reason": "Checked by phone call"},
        content_type="application/json",
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_decided"


def test_an_unknown_reason_code_is_refused() -> None:
    group, _ = parked_case()
    response = client_for(programme_officer()).post(
        f"/api/v1/workbench/cases/{group}/reject", {"code": "whatever"},
        content_type="application/json",
    )  # fmt: skip
    assert response.status_code == 400


# ------------------------------------------------------------------ ageing


def test_cases_waiting_longer_than_the_limit_are_counted_as_overdue(settings: Any) -> None:
    settings.WORKBENCH_WAITING_HOURS = 24
    old, _ = parked_case("ZAC01")
    parked_case("ZAC01")
    parked_case("ZCM01")
    MatchQueueItem.objects.filter(group=old).update(
        created_at=timezone.now() - datetime.timedelta(hours=30)
    )
    hospital = parked_waiting_counts(scope=DataQualityScope("ZAC01"))
    assert (hospital.waiting, hospital.overdue) == (2, 1)
    assert parked_overdue_count() == 1
    page = client_for(hospital_officer()).get("/workbench/").content.decode()
    assert 'id="waiting-count">2<' in page
    assert 'id="overdue-count">1<' in page
    assert "Overdue" in page


def test_each_organisation_gets_a_daily_digest_of_what_its_feeds_parked_and_why(
    settings: Any,
) -> None:
    settings.WORKBENCH_WAITING_HOURS = 24
    yesterday = timezone.localdate() - datetime.timedelta(days=1)
    noon = timezone.make_aware(datetime.datetime.combine(yesterday, datetime.time(12)))
    decided, _ = parked_case("ZAC01", reason="no-nhs-number")
    parked_case("ZAC01", reason="invalid-nhs-number")
    other, _ = parked_case("ZCM01", reason="unknown-patient")
    MatchQueueItem.objects.update(created_at=noon - datetime.timedelta(days=2))
    MatchQueueItem.objects.filter(group__in=[decided, other]).update(created_at=noon)
    client_for(hospital_officer()).post(
        f"/workbench/{decided}", {"decision": "reject", "code": "test-data"}
    )
    MatchQueueItem.objects.filter(group=decided).update(resolved_at=noon)

    assert parked_digests_compose_task() == 2
    hospital = ParkedDigest.objects.get(organisation__ods_code="ZAC01", day=yesterday)
    assert hospital.parked == {"no-nhs-number": 2}
    assert hospital.decided == {"rejected": 1}
    assert (hospital.waiting, hospital.overdue) == (1, 1)  # the invalid number, parked days ago
    community = ParkedDigest.objects.get(organisation__ods_code="ZCM01", day=yesterday)
    assert community.parked == {"unknown-patient": 1}
    assert (community.waiting, community.overdue) == (1, 0)
    # Composing the same day again rewrites the same rows.
    parked_digests_compose(day=yesterday)
    assert ParkedDigest.objects.filter(day=yesterday).count() == 2
    page = client_for(hospital_officer()).get("/workbench/").content.decode()
    assert "<title>Data quality workbench \N{EN DASH} Shared care record</title>" in page
    assert page.count('id="digests"') == 1
    digest = page[page.index('id="digests"') :]
    assert "No NHS number: 2" in digest  # reasons and decisions in words, not codes
    assert "Rejected: 1" in digest
    assert "no-nhs-number" not in page
    assert "Refers to a patient this source never sent" not in digest  # another organisation's


def test_the_daily_digest_runs_from_beat(settings: Any) -> None:
    schedule = settings.CELERY_BEAT_SCHEDULE["parked-digest"]
    assert schedule["task"] == parked_digests_compose_task.name


# ------------------------------------------------------------------ sources that disagree


def test_sources_that_disagree_are_flagged_on_the_record_and_in_the_workbench(
    registered_gp: User,
) -> None:
    group, _ = parked_case(reason="demographics-conflict")
    number = MatchQueueItem.objects.filter(group=group)[0].nhs_number_sent
    patient = Patient.objects.get(nhs_number=number)
    assert patient.demographics_disputed == []
    # The practice also sends the person: a second source, agreeing with the first.
    gp, _ = make_credential(partner("Z81001"))
    assert feed(gp, clinical_bundle(number, key=f"gp{number}", text="GP finding")).status == "done"
    officer = client_for(programme_officer())
    officer.post(
        f"/workbench/{group}",
        {"decision": "file", "candidate": str(patient.public_id),
         "note": "Same person: the ward confirmed"},
    )  # fmt: skip
    patient.refresh_from_db()
    assert patient.demographics_disputed == ["birth-date"]
    listing = officer.get("/workbench/disputes").content.decode()
    assert number in listing
    assert "date of birth" in listing
    assert "Z81001" in listing
    event = AuditEvent.objects.get(detail__list="disputed-demographics", nhs_number=number)
    assert event.patient_id == patient.public_id
    assert 'id="disputed-count">1<' in officer.get("/workbench/").content.decode()
    # An organisation's officers see the people their own feeds sent.
    community = client_for(make_staff("ZCM01", "community", "data-quality-officer"))
    assert number not in community.get("/workbench/disputes").content.decode()
    assert number in client_for(hospital_officer()).get("/workbench/disputes").content.decode()
    # And the record says so to the clinician reading it.
    reader = client_for(registered_gp)
    assert confirm_basis(reader, patient, claim="The person's GP, seen today").status_code == 302
    page = reader.get(f"/record/{patient.public_id}/").content.decode()
    assert 'id="demographics-disputed"' in page
    assert "date of birth" in page


def test_a_posted_form_with_odd_input_is_answered_on_the_page() -> None:
    group, _ = parked_case()
    client = client_for(programme_officer())
    odd = client.post(
        f"/workbench/{group}",
        {"decision": "file", "candidate": "not-a-uuid", "note": "Checked \x00 by phone call"},
    )
    assert odd.status_code == 400
    assert "No such person" in odd.content.decode()
    nul = client.post(
        f"/workbench/{group}",
        {"decision": "file", "nhs_number": next_nhs_number(), "note": "Checked by \x00 phone"},
    )
    assert nul.status_code == 302
    assert MatchQueueItem.objects.filter(group=group)[0].decision_note == "Checked by  phone"
