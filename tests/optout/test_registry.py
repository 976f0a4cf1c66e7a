"""Recording opt-outs and opt-ins: who may, what it removes, what it blocks, what is audited."""

from __future__ import annotations

import json
from typing import Any

import pytest

from audit.models import AuditAction, AuditEvent
from ingestion.models import MatchQueueItem
from ingestion.processing import feed_message_process
from optout.models import OptOut, OptOutChange, OptOutRoute, OptOutStatus
from optout.services import optout_register, optout_withdraw, practice_of
from sharedrecord.exceptions import PermissionDenied
from sharedrecord.models import Entry, Patient, SourceKey, User
from tests.factories import feed, make_credential, next_nhs_number, small_bundle

pytestmark = pytest.mark.django_db


def opt_out(user: User, number: str) -> Any:
    return optout_register(
        nhs_number=number, practice=practice_of(user), route=OptOutRoute.PRACTICE_REQUEST,
        recorded_by=user,
    )  # fmt: skip


def test_an_opt_out_removes_the_whole_record_in_the_same_transaction(practice, practice_gp) -> None:
    credential, _ = make_credential(practice)
    number, neighbour = next_nhs_number(), next_nhs_number()
    feed(credential, small_bundle(number))
    patient = Patient.objects.get(nhs_number=number)
    # A parked item naming the person, and a message still waiting that holds them and a neighbour.
    conflicting = small_bundle(number, key="conflict")
    conflicting["entry"][0]["resource"]["birthDate"] = "1990-01-01"
    feed(credential, conflicting)
    assert MatchQueueItem.objects.filter(nhs_number_sent=number).exists()
    both = small_bundle(number, key="both")
    both["entry"] += small_bundle(neighbour, key="nb")["entry"]
    waiting = feed(credential, both, process=False)

    result = opt_out(practice_gp, number)

    assert result.changed
    assert not Patient.objects.filter(nhs_number=number).exists()
    assert not Entry.objects.filter(patient_id=patient.pk).exists()
    assert not SourceKey.objects.filter(patient_id=patient.pk).exists()
    assert not MatchQueueItem.objects.filter(nhs_number_sent=number).exists()
    waiting.refresh_from_db()
    assert number.encode() not in bytes(waiting.payload)
    assert neighbour.encode() in bytes(waiting.payload)  # nothing else is lost
    event = AuditEvent.objects.get(action=AuditAction.OPTOUT_CHANGE, nhs_number=number)
    assert event.actor_id == practice_gp.public_id
    assert event.patient_id == patient.public_id
    assert event.detail["removed"]["entries"] == 2
    assert event.detail["removed"]["pending_messages_redacted"] == 1
    # Past access history stays: it is the governance record.
    assert AuditEvent.objects.filter(patient_id=patient.public_id, action="match-decision").exists()

    feed_message_process(message_id=waiting.pk)
    assert not Patient.objects.filter(nhs_number=number).exists()
    assert Patient.objects.filter(nhs_number=neighbour).exists()


def test_a_new_feed_for_an_opted_out_person_stores_nothing(practice, practice_gp) -> None:
    number = next_nhs_number()
    opt_out(practice_gp, number)
    credential, _ = make_credential(practice)
    message = feed(credential, small_bundle(number))
    assert message.counts["blocked"] == 2
    assert message.counts["created"] == 0
    assert bytes(message.payload) == b""
    assert not Patient.objects.filter(nhs_number=number).exists()
    assert not MatchQueueItem.objects.exists()
    assert number not in json.dumps(message.issues)


def test_recording_it_twice_changes_nothing(practice_gp) -> None:
    number = next_nhs_number()
    first = opt_out(practice_gp, number)
    second = opt_out(practice_gp, number)
    assert not second.changed
    assert second.optout.pk == first.optout.pk
    assert OptOutChange.objects.count() == 1
    assert (
        AuditEvent.objects.filter(action=AuditAction.OPTOUT_CHANGE, nhs_number=number).count() == 1
    )


def test_opting_back_in_lets_new_data_through(practice, practice_gp) -> None:
    number = next_nhs_number()
    opt_out(practice_gp, number)
    result = optout_withdraw(
        nhs_number=number, practice=practice_of(practice_gp), route=OptOutRoute.PRACTICE_REQUEST,
        recorded_by=practice_gp,
    )  # fmt: skip
    assert result.optout.status == OptOutStatus.OPTED_IN
    assert [c.status for c in OptOutChange.objects.filter(optout=result.optout)] == [
        "opted-in", "opted-out",
    ]  # fmt: skip
    credential, _ = make_credential(practice)
    assert feed(credential, small_bundle(number)).counts["created"] == 2
    assert (
        AuditEvent.objects.filter(action=AuditAction.OPTOUT_CHANGE, nhs_number=number).count() == 2
    )


def test_an_invalid_nhs_number_is_refused(practice_gp) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="valid 10-digit NHS number"):
        opt_out(practice_gp, "9912003890")
    assert not OptOut.objects.exists()


# ------------------------------------------------------------------ permission branches


def test_staff_without_the_permission_or_outside_gp_practices_may_not(
    practice_clerk_without_permission, hospital_clinician
) -> None:
    for user in (practice_clerk_without_permission, hospital_clinician):
        with pytest.raises(PermissionDenied):
            practice_of(user)


def test_superusers_get_no_opt_out_rights_by_accident(practice) -> None:
    root = User.objects.create_superuser(
        "root", password="x-long-password-9", organisation=practice, role="system-admin"
    )
    with pytest.raises(PermissionDenied):
        practice_of(root)


def test_another_practice_may_not_opt_out_someone_registered_elsewhere(
    practice, other_practice_gp
) -> None:
    number = next_nhs_number()
    credential, _ = make_credential(practice)
    feed(credential, small_bundle(number))  # registered with Z81001
    # The refusal does not say where the person is registered (it said "another practice").
    with pytest.raises(
        PermissionDenied, match=r"^This person is not registered with your practice\.$"
    ):
        opt_out(other_practice_gp, number)
    assert Patient.objects.filter(nhs_number=number).exists()


def test_only_the_practice_holding_the_entry_may_opt_them_back_in(
    practice_gp, other_practice_gp
) -> None:
    from django.core.exceptions import ValidationError

    number = next_nhs_number()
    opt_out(practice_gp, number)
    # Another practice is told what it would be told for any number it holds no entry for
    # (it used to get PermissionDenied, which revealed that another practice held one).
    with pytest.raises(ValidationError, match="no opt-out recorded by your practice"):
        optout_withdraw(
            nhs_number=number, practice=practice_of(other_practice_gp),
            route=OptOutRoute.PRACTICE_REQUEST, recorded_by=other_practice_gp,
        )  # fmt: skip
    assert OptOut.objects.get(nhs_number=number).status == OptOutStatus.OPTED_OUT
