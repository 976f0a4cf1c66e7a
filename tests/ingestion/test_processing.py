"""Processing a stored message: matching, the gate, the idempotent upsert, receipts and audit."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from audit.models import AuditAction, AuditEvent
from ingestion.models import FeedMessage, MatchQueueItem, MessageStatus
from ingestion.processing import feed_message_process
from sharedrecord.demographics import patient_demographics_refresh
from sharedrecord.models import Entry, Patient
from tests.factories import (
    gp_bundle,
    make_credential,
    make_organisation,
    next_nhs_number,
    small_bundle,
)
from tests.ingestion.conftest import FeedClient

pytestmark = pytest.mark.django_db


def send(
    partner: FeedClient, bundle: dict[str, Any] | str | bytes, **kwargs: Any
) -> dict[str, Any]:
    """Post, process on this thread (as the worker would), and return the receipt."""
    response = partner.post(bundle, **kwargs)
    assert response.status_code == 202, response.content
    message = FeedMessage.objects.get(public_id=response.json()["id"])
    feed_message_process(message_id=message.pk)
    return dict(partner.receipt(response["Content-Location"]).json())


def codes(receipt: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [
        (i["details"]["coding"][0]["code"], i.get("expression", []))
        for i in receipt["outcome"]["issue"]
    ]


def test_a_gp_summary_builds_the_persons_record(partner: FeedClient) -> None:
    number = next_nhs_number()
    bundle = gp_bundle(number)
    receipt = send(partner, bundle)
    assert receipt["status"] == "done"
    assert receipt["counts"] == {
        "created": len(bundle["entry"]), "updated": 0, "unchanged": 0, "deleted": 0,
        "rejected": 0, "parked": 0, "blocked": 0,
    }  # fmt: skip
    patient = Patient.objects.get(nhs_number=number)
    assert (patient.family_name, patient.given_names) == ("Ellison", "Margaret")
    assert str(patient.birth_date) == "1941-03-14"
    assert patient.registered_gp_ods == "Z81001"
    sections = sorted(set(Entry.objects.filter(patient=patient).values_list("section", flat=True)))
    assert sections == [
        "allergies", "demographics", "encounters", "immunisations", "medications", "problems",
        "results",
    ]  # fmt: skip
    allergy = Entry.objects.get(patient=patient, resource_type="AllergyIntolerance")
    assert (allergy.code, allergy.status) == ("91936005", "active")
    assert allergy.source_org.ods_code == "Z81001"
    assert allergy.effective_at is not None
    message = FeedMessage.objects.get(public_id=receipt["id"])
    assert bytes(message.payload) == b""  # raw partner data is not kept after processing
    processed = AuditEvent.objects.get(
        action=AuditAction.FEED_PROCESSED, detail__message=receipt["id"]
    )
    assert processed.detail["counts"]["created"] == len(bundle["entry"])
    assert AuditEvent.objects.filter(
        action=AuditAction.MATCH_DECISION, patient_id=patient.public_id, detail__decision="created"
    ).exists()


def test_the_same_content_again_is_unchanged_and_a_newer_version_updates(
    partner: FeedClient,
) -> None:
    number = next_nhs_number()
    bundle = small_bundle(number)
    send(partner, bundle)
    again = copy.deepcopy(bundle)
    again["id"] = "resent-1"
    assert send(partner, again)["counts"]["unchanged"] == 2

    newer = copy.deepcopy(bundle)
    newer["id"] = "resent-2"
    condition = newer["entry"][1]["resource"]
    condition["meta"] = {"versionId": "2"}
    condition["code"]["coding"][0]["code"] = "44054006"
    receipt = send(partner, newer)
    assert (receipt["counts"]["updated"], receipt["counts"]["unchanged"]) == (1, 1)
    stored = Entry.objects.get(patient__nhs_number=number, resource_type="Condition")
    assert stored.code == "44054006"

    older = copy.deepcopy(bundle)
    older["id"] = "resent-3"
    older["entry"][1]["resource"]["meta"] = {"versionId": "1"}
    older["entry"][1]["resource"]["code"]["coding"][0]["code"] = "1111111"
    send(partner, older)
    stored.refresh_from_db()
    assert stored.code == "44054006"
    assert Entry.objects.filter(patient__nhs_number=number).count() == 2


def test_delete_and_entered_in_error_remove_the_entry(partner: FeedClient) -> None:
    number = next_nhs_number()
    bundle = small_bundle(number)
    send(partner, bundle)
    condition_id = bundle["entry"][1]["resource"]["id"]
    deleting = {
        "resourceType": "Bundle", "id": "delete-1", "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": f"Condition/{condition_id}"}}],
    }  # fmt: skip
    assert send(partner, deleting)["counts"]["deleted"] == 1
    assert not Entry.objects.filter(resource_type="Condition", patient__nhs_number=number).exists()

    assert send(partner, {**copy.deepcopy(bundle), "id": "again"})["counts"]["created"] == 1
    wrong = copy.deepcopy(bundle)
    wrong["id"] = "entered-in-error"
    wrong["entry"][1]["resource"]["verificationStatus"] = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "entered-in-error"}]
    }  # fmt: skip
    receipt = send(partner, wrong)
    assert receipt["counts"]["deleted"] == 1
    assert not Entry.objects.filter(resource_type="Condition", patient__nhs_number=number).exists()


@pytest.mark.parametrize(
    ("number", "reason"),
    [(None, "no-nhs-number"), ("9912003890", "invalid-nhs-number")],
)
def test_a_person_without_a_valid_nhs_number_is_parked_not_guessed(
    partner: FeedClient, number: str | None, reason: str
) -> None:
    receipt = send(partner, small_bundle(number))
    assert receipt["counts"]["parked"] == 2
    assert receipt["counts"]["created"] == 0
    assert codes(receipt) == [(f"parked-{reason}", ["Bundle.entry[0]"])]
    assert set(MatchQueueItem.objects.values_list("reason", flat=True)) == {reason}
    assert Patient.objects.count() == 0
    assert Entry.objects.count() == 0
    event = AuditEvent.objects.get(action=AuditAction.MATCH_DECISION, detail__message=receipt["id"])
    assert (event.outcome, event.detail["decision"], event.detail["reason"]) == (
        "rejected", "parked", reason,
    )  # fmt: skip
    assert event.detail["entries"] == 2


def test_two_nhs_numbers_on_one_patient_are_rejected(partner: FeedClient) -> None:
    bundle = small_bundle(next_nhs_number())
    bundle["entry"][0]["resource"]["identifier"].append(
        {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": next_nhs_number()}
    )
    receipt = send(partner, bundle)
    assert (receipt["counts"]["rejected"], receipt["counts"]["parked"]) == (2, 0)
    assert codes(receipt) == [
        ("conflicting-nhs-numbers", ["Bundle.entry[0]", "Patient.identifier"])
    ]
    assert Entry.objects.count() == 0
    assert MatchQueueItem.objects.count() == 0
    event = AuditEvent.objects.get(action=AuditAction.MATCH_DECISION, detail__message=receipt["id"])
    assert (event.detail["decision"], event.detail["reason"], event.detail["entries"]) == (
        "rejected", "conflicting-nhs-numbers", 2,
    )  # fmt: skip


def test_shown_demographics_prefer_the_registered_practice(partner: FeedClient, client) -> None:

    number = next_nhs_number()
    send(partner, small_bundle(number, key="gp"))  # from Z81001, the registered practice
    acute = FeedClient(client, make_credential(make_organisation(ods_code="ZAC55"))[1])
    later = small_bundle(number, key="acute")
    later["entry"][0]["resource"]["name"] = [
        {"use": "official", "family": "Elison", "given": ["Maggie"]}
    ]
    send(acute, later)
    patient = Patient.objects.get(nhs_number=number)
    assert (patient.family_name, patient.demographics_source_ods) == ("Ellison", "Z81001")
    assert patient.registered_gp_ods == "Z81001"
    assert Entry.objects.filter(patient=patient, resource_type="Patient").count() == 2

    # Without the registered practice's resource, the most recent source's is shown.
    Entry.objects.filter(patient=patient, source_org__ods_code="Z81001").delete()
    patient_demographics_refresh(patient=patient)
    patient.refresh_from_db()
    assert (patient.family_name, patient.demographics_source_ods) == ("Elison", "ZAC55")


def test_a_conflicting_birth_date_is_parked_for_review(partner: FeedClient) -> None:
    number = next_nhs_number()
    send(partner, small_bundle(number))
    other = small_bundle(number, key="s2")
    other["entry"][0]["resource"]["birthDate"] = "1990-01-01"
    receipt = send(partner, other)
    assert receipt["counts"]["parked"] == 2
    assert MatchQueueItem.objects.get(resource_type="Patient").reason == "demographics-conflict"


def _bad_entries_bundle(number: str) -> dict[str, Any]:
    bundle = small_bundle(number)
    patient_url = bundle["entry"][0]["fullUrl"]
    good = bundle["entry"][1]
    subject = {"reference": patient_url}
    bundle["entry"] += [
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Claim", "id": "c1"}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Observation", "id": "o1", "status": "final", "subject": subject}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000003",
         "resource": {"resourceType": "Condition", "id": "c2", "subject": subject, "onsetDateTime": "2020-13-45"}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000004",
         "resource": {"resourceType": "Condition", "id": "c3", "subject": subject, "note": [{"text": "x" * 1_100_000}]}},
        {"fullUrl": good["fullUrl"], "resource": {**good["resource"], "id": "dup"}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000005",
         "resource": {"resourceType": "Condition", "id": "c4", "subject": {"reference": "urn:uuid:nowhere"}}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000006",
         "resource": {"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": subject,
                      "class": {"code": "AMB"}, "period": {"start": "2024-05-02", "end": "2024-05-01"}}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000007",
         "resource": {"resourceType": "Flag", "id": "f1", "status": "active", "subject": subject,
                      "code": {"text": "x"}, "text": {"status": "generated",
                      "div": "<div xmlns='http://www.w3.org/1999/xhtml'><script>alert(1)</script></div>"}}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000008",
         "resource": {"resourceType": "Flag", "id": "f2", "status": "active", "subject": subject,
                      "code": {"text": "x"}, "category": []}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000009",
         "resource": {"resourceType": "Flag", "id": "x" * 65, "status": "active", "subject": subject,
                      "code": {"text": "x"}}},
        {"fullUrl": "Flag/relative", "resource": {"resourceType": "Flag", "id": "f3"}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000010",
         "resource": {"resourceType": "Observation", "id": "o2", "status": "done", "subject": subject,
                      "code": {"text": "x"}}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000011",
         "resource": {"resourceType": "Condition", "id": "c5", "subject": subject,
                      "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "gone"}]}}},
    ]  # fmt: skip
    return bundle


def test_each_bad_entry_gets_its_own_error_and_the_rest_is_stored(partner: FeedClient) -> None:
    number = next_nhs_number()
    receipt = send(partner, _bad_entries_bundle(number))
    assert receipt["status"] == "done"
    assert codes(receipt) == [
        ("unsupported-type", ["Bundle.entry[2]", "Bundle.entry[2].resource"]),
        ("invalid-resource", ["Bundle.entry[3]", "Observation.code"]),
        ("invalid-resource", ["Bundle.entry[4]", "Condition.onsetDateTime"]),
        ("too-long", ["Bundle.entry[5]", "Condition.note[0].text"]),
        ("duplicate-fullurl", ["Bundle.entry[6]", "Bundle.entry[6].fullUrl"]),
        ("unresolved-patient", ["Bundle.entry[7]", "Condition.subject"]),
        ("period-order", ["Bundle.entry[8]", "Encounter.period"]),
        ("active-content", ["Bundle.entry[9]", "Flag.text.div"]),
        ("empty-value", ["Bundle.entry[10]", "Flag.category"]),
        ("invalid-id", ["Bundle.entry[11]", "Flag.id"]),
        ("relative-fullurl", ["Bundle.entry[12]", "Bundle.entry[12].fullUrl"]),
        ("invalid-code", ["Bundle.entry[13]", "Observation.status"]),
        ("invalid-code", ["Bundle.entry[14]", "Condition.clinicalStatus.coding[0].code"]),
    ]
    assert receipt["counts"]["rejected"] == 13
    assert receipt["counts"]["created"] == 2  # the Patient and the good Condition
    assert Entry.objects.filter(patient__nhs_number=number).count() == 2
    assert number not in json.dumps(receipt)
    assert "alert(1)" not in json.dumps(receipt)


def test_a_message_unreadable_at_processing_is_rejected_with_its_reason(
    partner: FeedClient,
) -> None:
    response = partner.post(small_bundle(next_nhs_number()))
    message = FeedMessage.objects.get(public_id=response.json()["id"])
    organisation = message.organisation
    organisation.dsa_end = organisation.dsa_start
    organisation.save()
    feed_message_process(message_id=message.pk)
    receipt = partner.client.get(
        response["Content-Location"], headers={"Authorization": f"Bearer {partner.token}"}
    )
    # Reading an old receipt stays possible after the agreement ends.
    assert receipt.status_code == 200
    body = receipt.json()
    assert body["status"] == "rejected"
    assert codes(body) == [("agreement-inactive", ["Bundle"])]
    assert Entry.objects.count() == 0
    assert AuditEvent.objects.filter(
        action=AuditAction.FEED_REJECTED, detail__message=body["id"]
    ).exists()


def test_a_message_is_processed_once_even_if_its_task_runs_twice(partner: FeedClient) -> None:
    response = partner.post(small_bundle(next_nhs_number()))
    message = FeedMessage.objects.get(public_id=response.json()["id"])
    assert feed_message_process(message_id=message.pk) == MessageStatus.DONE
    assert feed_message_process(message_id=message.pk) == "not-claimed"
    assert (
        AuditEvent.objects.filter(
            action=AuditAction.FEED_PROCESSED, detail__message=str(message.public_id)
        ).count()
        == 1
    )
