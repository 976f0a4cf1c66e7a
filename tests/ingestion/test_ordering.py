"""Per-source ordering holds whatever order messages are processed in (retries, crashes).

An entry's meta.versionId, then meta.lastUpdated (for HL7 v2, the message's EVN-2/MSH-7
time) decides; an older message never overwrites, removes or moves a newer entry.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest
from django.test import Client

from audit.trail import AuditActor
from ingestion.fhir.fields import content_hash
from ingestion.models import FeedMessage, MessageStatus
from ingestion.processing import feed_message_process
from sharedrecord.entries import UpsertResult, entries_upsert, entry_remove
from sharedrecord.entrydata import EntryData
from sharedrecord.identity import identity_operation_undo, patients_merge
from sharedrecord.models import Entry, Organisation, Patient, RemovedKey, SourceKey
from tests.factories import (
    hl7_message,
    make_credential,
    make_organisation,
    make_patient,
    next_nhs_number,
    small_bundle,
)
from tests.ingestion.conftest import FeedClient

pytestmark = pytest.mark.django_db
T1 = datetime.datetime(2026, 3, 1, 9, 0, tzinfo=datetime.UTC)
T2 = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC)
T3 = datetime.datetime(2026, 3, 3, 9, 0, tzinfo=datetime.UTC)


def _item(value: int, *, version: str = "", at: datetime.datetime | None = None) -> EntryData:
    resource = {"resourceType": "Observation", "id": "obs-1", "status": "final",
                "code": {"text": "x"}, "valueQuantity": {"value": value}}  # fmt: skip
    return EntryData(
        resource_type="Observation",
        source_id="obs-1",
        section="results",
        resource=resource,
        content_hash=content_hash(resource),
        version_id=version,
        source_updated_at=at,
    )


def _upsert(patient: Patient, org: Organisation, item: EntryData) -> UpsertResult:
    (result,) = entries_upsert(
        patient=patient, source_org=org, source_system="EPR", items=[item], feed_message_id=None
    )
    return result


# ---------------------------------------------------------------- the upsert


def test_an_older_version_never_overwrites_a_newer_one() -> None:
    org, patient = make_organisation(), make_patient()
    assert _upsert(patient, org, _item(2, at=T2)) == UpsertResult.CREATED
    assert _upsert(patient, org, _item(1, at=T1)) == UpsertResult.STALE
    assert Entry.objects.get(patient=patient).resource["valueQuantity"]["value"] == 2


def test_an_older_version_filed_under_another_person_does_not_move_the_newer_entry() -> None:
    org, newer_owner, older_owner = make_organisation(), make_patient(), make_patient()
    assert _upsert(newer_owner, org, _item(2, version="2")) == UpsertResult.CREATED
    assert _upsert(older_owner, org, _item(1, version="1")) == UpsertResult.STALE
    assert Entry.objects.get(source_id="obs-1").patient == newer_owner
    assert SourceKey.objects.get(source_org=org, source_id="obs-1").patient == newer_owner
    assert not Entry.objects.filter(patient=older_owner).exists()


def test_a_newer_version_filed_under_another_person_moves_to_them() -> None:
    org, before, after = make_organisation(), make_patient(), make_patient()
    _upsert(before, org, _item(1, at=T1))
    assert _upsert(after, org, _item(2, at=T2)) == UpsertResult.CREATED
    assert Entry.objects.get(source_id="obs-1").patient == after
    assert SourceKey.objects.get(source_org=org, source_id="obs-1").patient == after


def test_the_same_content_at_a_newer_version_is_remembered_so_an_older_change_cannot_win() -> None:
    org, patient = make_organisation(), make_patient()
    _upsert(patient, org, _item(1, at=T1))
    # The source changed it and changed it back: v3 has v1's content.
    assert _upsert(patient, org, _item(1, at=T3)) == UpsertResult.UNCHANGED
    # The change in between arrives last (a retry); it is older than what is held.
    assert _upsert(patient, org, _item(7, at=T2)) == UpsertResult.STALE
    entry = Entry.objects.get(patient=patient)
    assert entry.resource["valueQuantity"]["value"] == 1
    assert entry.source_updated_at == T3


def test_an_older_removal_does_not_remove_a_newer_entry() -> None:
    org, patient = make_organisation(), make_patient()
    _upsert(patient, org, _item(2, version="2"))
    kept = entry_remove(
        source_org=org, resource_type="Observation", source_id="obs-1", version_id="1"
    )
    assert kept is None
    assert Entry.objects.filter(patient=patient).exists()
    removed = entry_remove(
        source_org=org, resource_type="Observation", source_id="obs-1", version_id="3"
    )
    assert removed == patient
    assert not Entry.objects.filter(patient=patient).exists()


def _remove(
    org: Organisation, patient: Patient, *, version: str = "", at: datetime.datetime | None = None
) -> Any:
    """The source sends the result again as entered in error, at this version, for the person."""
    return entry_remove(
        source_org=org, resource_type="Observation", source_id="obs-1", version_id=version,
        source_updated_at=at, entered_in_error_for=patient,
    )  # fmt: skip


def test_an_older_version_arriving_after_its_removal_does_not_bring_the_entry_back() -> None:
    # A result marked entered in error (v3), then its final version (v2) again, a retry.
    org, patient = make_organisation(), make_patient()
    _upsert(patient, org, _item(2, version="2"))
    assert _remove(org, patient, version="3") == patient
    assert _upsert(patient, org, _item(2, version="2")) == UpsertResult.STALE
    assert not Entry.objects.filter(patient=patient).exists()
    assert not SourceKey.objects.filter(source_org=org, source_id="obs-1").exists()
    # The same by time (a resource's lastUpdated; HL7 v2's EVN-2, else MSH-7).
    other = make_organisation()
    _upsert(patient, other, _item(1, at=T1))
    _remove(other, patient, at=T2)
    assert _upsert(patient, other, _item(1, at=T1)) == UpsertResult.STALE
    assert not Entry.objects.filter(patient=patient).exists()


def test_a_removal_processed_before_its_entry_keeps_the_entry_out() -> None:
    org, patient = make_organisation(), make_patient()
    assert _remove(org, patient, version="3") is None  # nothing held yet
    assert _upsert(patient, org, _item(2, version="2")) == UpsertResult.STALE
    assert not Entry.objects.filter(patient=patient).exists()


def test_a_newer_version_after_a_removal_is_stored_again() -> None:
    org, patient = make_organisation(), make_patient()
    _upsert(patient, org, _item(1, at=T1))
    _remove(org, patient, at=T2)
    assert _upsert(patient, org, _item(3, at=T3)) == UpsertResult.CREATED
    assert Entry.objects.get(patient=patient).resource["valueQuantity"]["value"] == 3
    assert not RemovedKey.objects.filter(source_org=org).exists()  # the entry's version rules


@pytest.mark.parametrize("one_source", [False, True], ids=["every-source", "one-source"])
def test_a_merge_carries_what_the_merged_persons_sources_removed(one_source: bool) -> None:
    # The merged-away person is deleted once they hold nothing (an A40 moves only its
    # sender's entries): what any source withdrew for them must not go with them, or
    # the withdrawn result could come back.
    hospital, lab = make_organisation(), make_organisation()
    merged, kept = make_patient(), make_patient()
    _upsert(merged, hospital, _item(5, at=T1))
    _upsert(merged, lab, _item(2, version="2"))
    _remove(lab, merged, version="3")
    actor = AuditActor.system("ordering test")
    done = patients_merge(
        from_nhs_number=merged.nhs_number, to_nhs_number=kept.nhs_number,
        source_org=hospital if one_source else None, blocked=False, actor=actor,
    )  # fmt: skip
    assert done.merged_removed
    assert RemovedKey.objects.get(source_org=lab).patient == kept
    assert _upsert(kept, lab, _item(2, version="2")) == UpsertResult.STALE
    identity_operation_undo(operation=done.operation, actor=actor)
    assert RemovedKey.objects.get(source_org=lab).patient_id == merged.pk  # back, same row


# ---------------------------------------------------------------- through the worker


def _stamped(bundle: dict[str, Any], at: str, family: str) -> dict[str, Any]:
    bundle = copy.deepcopy(bundle)
    bundle["id"] = f"{bundle['id']}-{family}"
    for entry in bundle["entry"]:
        entry["resource"]["meta"] = {"lastUpdated": at}
    bundle["entry"][0]["resource"]["name"][0]["family"] = family
    return bundle


def test_source_ids_reused_for_another_person_keep_the_newest_whatever_the_order(
    partner: FeedClient,
) -> None:
    older_person, newer_person = next_nhs_number(), next_nhs_number()
    # The source filed these ids under one person, then (later) under another.
    older = _stamped(small_bundle(older_person, key="reuse"), "2026-03-01T09:00:00Z", "Older")
    newer = _stamped(small_bundle(newer_person, key="reuse"), "2026-03-02T09:00:00Z", "Newer")
    first = partner.post(older)
    second = partner.post(newer)
    assert first.status_code == second.status_code == 202
    # A worker crash: the newer message is processed first, the older one after it.
    for response in (second, first):
        message = FeedMessage.objects.get(public_id=response.json()["id"])
        assert feed_message_process(message_id=message.pk) == MessageStatus.DONE
    newest = Patient.objects.get(nhs_number=newer_person)
    assert sorted(newest.entries.values_list("resource_type", flat=True)) == [
        "Condition",
        "Patient",
    ]
    assert newest.family_name == "Newer"
    assert not Entry.objects.filter(patient__nhs_number=older_person).exists()
    receipt = partner.receipt(first["Content-Location"]).json()
    assert receipt["counts"]["unchanged"] == 2


def test_a_diagnosis_entered_in_error_stays_out_when_its_older_version_is_processed_last(
    partner: FeedClient,
) -> None:
    # The source files a diagnosis, then marks it entered in error; a worker crash has
    # the second message processed first.
    number = next_nhs_number()
    filed = _stamped(small_bundle(number, key="eie"), "2026-03-01T09:00:00Z", "Filed")
    withdrawn = _stamped(small_bundle(number, key="eie"), "2026-03-02T09:00:00Z", "Withdrawn")
    withdrawn["entry"][1]["resource"]["verificationStatus"] = {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
        "code": "entered-in-error"}]}  # fmt: skip
    responses = [partner.post(filed), partner.post(withdrawn)]
    for response in reversed(responses):
        message = FeedMessage.objects.get(public_id=response.json()["id"])
        assert feed_message_process(message_id=message.pk) == MessageStatus.DONE
    assert not Entry.objects.filter(patient__nhs_number=number, resource_type="Condition").exists()
    receipt = partner.receipt(responses[0]["Content-Location"]).json()
    assert receipt["counts"]["created"] == 0  # its Condition held out, its Patient unchanged


def test_a_cancelled_admission_dated_by_its_message_does_not_hold_back_a_readmission(
    client: Client,
) -> None:
    # An A11 is dated by its message (MSH-7, 10:05); the versions of the visit it cancels
    # by their event (EVN-2). The re-admission happened at 10:02 and is sent after the
    # cancellation: remembered, the cancellation would hold it back as older.
    _, token = make_credential(make_organisation(ods_code="ZOR11", kind="acute"))
    number = next_nhs_number()
    for event, sent, happened, control in (("A01", "100000", "100000", "C1"),
                                           ("A11", "100500", "100500", "C2"),
                                           ("A01", "100600", "100200", "C3")):  # fmt: skip
        text = hl7_message(number, control_id=control, event=event, visit="V11")
        text = text.replace("20261120101500||", f"20261120{sent}||")
        text = text.replace(f"EVN|{event}|20261120101500", f"EVN|{event}|20261120{happened}")
        response = client.post(
            "/api/v1/feeds/hl7v2", data=text.encode(), content_type="x-application/hl7-v2+er7",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )  # fmt: skip
        assert "|AA|" in response.content.decode()
        message = FeedMessage.objects.order_by("-id").first()
        assert message is not None
        assert feed_message_process(message_id=message.pk) == MessageStatus.DONE
        held = Entry.objects.filter(patient__nhs_number=number, resource_type="Encounter")
        assert held.exists() is (event == "A01"), event
    assert not RemovedKey.objects.filter(source_org__ods_code="ZOR11").exists()


def _hl7_at(number: str, when: str, family: str, control_id: str, *, evn: bool = True) -> bytes:
    text = hl7_message(number, control_id=control_id, event="A08", family=family)
    text = text.replace("20261120101500", when)
    if not evn:
        text = "\r".join(s for s in text.split("\r") if not s.startswith("EVN"))
    return text.encode()


@pytest.mark.parametrize("evn", [True, False], ids=["evn-2", "msh-7-only"])
def test_an_older_hl7_message_processed_last_does_not_overwrite_a_newer_one(
    client: Client, evn: bool
) -> None:
    _, token = make_credential(make_organisation(ods_code=f"ZOR0{int(evn)}", kind="acute"))
    number = next_nhs_number()
    posted = []
    for when, family, control in (("20261120100000", "OLDER", "O1"),
                                  ("20261120110000", "NEWER", "N1")):  # fmt: skip
        response = client.post(
            "/api/v1/feeds/hl7v2", data=_hl7_at(number, when, family, control, evn=evn),
            content_type="x-application/hl7-v2+er7", HTTP_AUTHORIZATION=f"Bearer {token}",
        )  # fmt: skip
        assert "|AA|" in response.content.decode()
        posted.append(FeedMessage.objects.order_by("-id").first())
    for message in reversed(posted):
        assert message is not None
        assert feed_message_process(message_id=message.pk) == MessageStatus.DONE
    patient = Entry.objects.get(patient__nhs_number=number, resource_type="Patient")
    assert patient.resource["name"][0]["family"] == "NEWER"


def test_an_older_hl7_message_reusing_a_local_id_for_another_person_moves_nothing(
    client: Client,
) -> None:
    _, token = make_credential(make_organisation(ods_code="ZOR09", kind="acute"))
    older_person, newer_person = next_nhs_number(), next_nhs_number()
    posted = []
    # The same hospital number (PID-3 MR) and visit, sent for one person, then another.
    for number, when, family, control in (
        (older_person, "20261120100000", "OLDER", "R1"),
        (newer_person, "20261120110000", "NEWER", "R2"),
    ):
        response = client.post(
            "/api/v1/feeds/hl7v2", data=_hl7_at(number, when, family, control),
            content_type="x-application/hl7-v2+er7", HTTP_AUTHORIZATION=f"Bearer {token}",
        )  # fmt: skip
        assert "|AA|" in response.content.decode()
        posted.append(FeedMessage.objects.order_by("-id").first())
    for message in reversed(posted):
        assert message is not None
        assert feed_message_process(message_id=message.pk) == MessageStatus.DONE
    kept = Entry.objects.filter(patient__nhs_number=newer_person)
    assert sorted(kept.values_list("resource_type", flat=True)) == ["Encounter", "Patient"]
    assert not Entry.objects.filter(patient__nhs_number=older_person).exists()
