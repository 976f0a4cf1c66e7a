"""When the registration authority moves a person, their opt-out moves to the new practice."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from audit.models import AuditAction, AuditEvent
from optout.models import OptOut, OptOutRoute, OptOutStatus
from optout.selectors import optout_blocks
from optout.services import optout_holding_move, optout_register, optout_withdraw
from sharedrecord.entries import patient_lock
from sharedrecord.models import Organisation, User
from tests.factories import client_for, make_organisation, next_nhs_number

pytestmark = pytest.mark.django_db


def opt_out(practice: Organisation, number: str, note: str = "") -> OptOut:
    return optout_register(
        nhs_number=number, practice=practice, route=OptOutRoute.PRACTICE_REQUEST, note=note,
        recorded_by_system="test",
    ).optout  # fmt: skip


def opt_in(practice: Organisation, number: str) -> None:
    optout_withdraw(
        nhs_number=number, practice=practice, route=OptOutRoute.PRACTICE_REQUEST,
        recorded_by_system="test",
    )  # fmt: skip


def authority() -> Organisation:
    return Organisation.objects.get_or_create(
        ods_code="ZDS01",
        defaults={
            "name": "Demographics",
            "kind": "registration-authority",
            "dsa_start": "2025-01-01",
        },
    )[0]


def move(
    number: str, to_practice: Organisation, asserted_at: datetime.datetime | None = None
) -> int:
    with transaction.atomic():
        patient_lock(nhs_number=number)  # as ingestion does
        return optout_holding_move(
            nhs_number=number, to_practice=to_practice, asserted_by=authority(),
            asserted_at=asserted_at,
        )  # fmt: skip


def moves(number: str) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            action=AuditAction.OPTOUT_CHANGE, nhs_number=number, detail__change="holding-moved"
        )
    )


def test_an_active_opt_out_moves_to_the_new_practice_with_its_history(
    practice: Organisation, other_practice: Organisation, other_practice_gp: User, practice_gp: User
) -> None:
    number = next_nhs_number()
    entry = opt_out(practice, number, note="Old practice's own words")

    assert move(number, other_practice) == 1

    entry.refresh_from_db()
    assert (entry.practice, entry.status, entry.route) == (
        other_practice,
        OptOutStatus.OPTED_OUT,
        OptOutRoute.REGISTRATION_MOVED,
    )
    assert entry.note == ""
    assert [(c.practice.ods_code, c.route) for c in entry.changes.all()] == [
        ("Z81002", "registration-moved"),
        ("Z81001", "practice-request"),
    ]
    assert optout_blocks(nhs_number=number)
    (event,) = moves(number)
    assert event.detail["from"] == ["Z81001"]
    assert event.detail["to"] == "Z81002"
    assert event.detail["moved"] == 1
    assert event.actor_type == "system"

    # The new practice sees it as its own, without the old practice's note or code.
    new = client_for(other_practice_gp)
    detail = new.get(f"/optouts/{entry.public_id}").content.decode()
    assert "Moved here when the person registered with your practice" in detail
    assert "Old practice&#x27;s own words" not in detail
    api = new.get(f"/api/v1/optouts/{entry.public_id}").json()
    assert [h["practice"] for h in api["history"]] == ["Z81002"]
    # The old practice no longer holds it.
    old = client_for(practice_gp)
    assert old.get(f"/optouts/{entry.public_id}").status_code == 404
    assert old.get("/api/v1/optouts/").json()["results"] == []


def test_the_new_practice_may_opt_the_person_back_in(
    practice: Organisation, other_practice: Organisation, other_practice_gp: User
) -> None:
    number = next_nhs_number()
    opt_out(practice, number)
    move(number, other_practice)
    response = client_for(other_practice_gp).post(
        "/api/v1/optouts/withdraw", {"nhs_number": number}, content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "opted-in"
    assert not optout_blocks(nhs_number=number)


def test_it_merges_with_the_new_practices_own_entry_and_the_person_stays_opted_out(
    practice: Organisation, other_practice: Organisation
) -> None:
    number = next_nhs_number()
    third = make_organisation(kind="gp-practice")
    opt_out(other_practice, number, note="new practice")
    opt_in(other_practice, number)  # the new practice's own entry, opted back in
    opt_out(practice, number)
    opt_out(third, number)

    assert move(number, other_practice) == 2

    (entry,) = OptOut.objects.filter(nhs_number=number)
    assert (entry.practice, entry.status) == (other_practice, OptOutStatus.OPTED_OUT)
    assert optout_blocks(nhs_number=number)
    assert entry.changes.filter(route=OptOutRoute.REGISTRATION_MOVED).count() == 2
    assert entry.changes.count() == 6  # nothing in the history is lost
    (event,) = moves(number)
    assert event.detail["from"] == sorted(["Z81001", third.ods_code])
    assert event.detail["moved"] == 2


def test_inactive_entries_stay_and_nothing_to_move_writes_nothing(
    practice: Organisation, other_practice: Organisation
) -> None:
    number = next_nhs_number()
    opt_out(practice, number)
    opt_in(practice, number)
    assert move(number, other_practice) == 0
    assert move(next_nhs_number(), other_practice) == 0
    assert OptOut.objects.get(nhs_number=number).practice == practice
    assert moves(number) == []


def test_moving_to_its_own_practice_or_again_changes_nothing(
    practice: Organisation, other_practice: Organisation
) -> None:
    number = next_nhs_number()
    opt_out(practice, number)
    assert move(number, practice) == 0
    assert move(number, other_practice) == 1
    assert move(number, other_practice) == 0
    assert len(moves(number)) == 1


def test_only_a_gp_practice_may_receive_an_opt_out(practice: Organisation) -> None:
    number = next_nhs_number()
    opt_out(practice, number)
    with pytest.raises(ValidationError):
        move(number, make_organisation(kind="acute"))
    assert OptOut.objects.get(nhs_number=number).practice == practice


def test_a_stale_assertion_moves_nothing(
    practice: Organisation, other_practice: Organisation
) -> None:
    """A replayed or late message from the authority, no newer than the one that moved it."""
    number = next_nhs_number()
    opt_out(practice, number)
    monday = datetime.datetime(2026, 11, 23, 9, tzinfo=datetime.UTC)
    sunday = monday - datetime.timedelta(days=1)
    # An assertion older than the opt-out itself still moves it: the registration
    # changed before the person opted out, and we heard of it later.
    assert move(number, other_practice, asserted_at=monday) == 1
    assert OptOut.objects.get(nhs_number=number).practice == other_practice
    # Sunday's message, replayed after Monday's, does not move it back.
    assert move(number, practice, asserted_at=sunday) == 0
    assert move(number, practice, asserted_at=monday) == 0
    assert OptOut.objects.get(nhs_number=number).practice == other_practice
    assert move(number, practice, asserted_at=monday + datetime.timedelta(hours=1)) == 1
    assert OptOut.objects.get(nhs_number=number).practice == practice
