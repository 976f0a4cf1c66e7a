"""Registration checks: a practice opts out only its own patients, or someone of unknown
registration after seeing who the number is; the latter goes to the programme's review (F3).
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent
from audit.selectors import GovernanceScope, audit_review_queue
from optout.models import OptOut, OptOutRoute
from optout.services import optout_register
from sharedrecord.access import optout_practice_may_record
from sharedrecord.exceptions import PermissionDenied
from sharedrecord.models import Organisation, Patient, User
from tests.factories import client_for, make_patient, next_nhs_number

pytestmark = pytest.mark.django_db


def person(registered_gp_ods: str = "") -> Patient:
    return make_patient(
        nhs_number=next_nhs_number(),
        family_name="Ellison",
        given_names="Margaret Rose",
        birth_date=datetime.date(1941, 3, 14),
        address="4 Mill Lane, Borough Town",
        postcode="ZZ1 1AA",
        registered_gp_ods=registered_gp_ods,
    )


def check_page(client: Client, number: str, note: str = "") -> Any:
    return client.post("/optouts/record", {"nhs_number": number, "note": note, "step": "check"})


def change_events(number: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditAction.OPTOUT_CHANGE, nhs_number=number))


# ------------------------------------------------------------------ the who-may rule


@pytest.mark.parametrize(
    ("registered", "allowed"),
    [("Z81001", True), ("", True), ("Z81002", False)],
    ids=["own-patient", "registration-unknown", "registered-elsewhere"],
)
def test_a_practice_may_record_for_its_own_patients_and_people_of_unknown_registration(
    practice: Organisation, registered: str, allowed: bool
) -> None:
    assert optout_practice_may_record(practice=practice, registered_gp_ods=registered) is allowed


# ------------------------------------------------------------------ registered elsewhere


def test_someone_registered_elsewhere_is_refused_without_saying_where(
    practice_gp: User, other_practice: Organisation
) -> None:
    patient = person(registered_gp_ods=other_practice.ods_code)
    with pytest.raises(PermissionDenied) as refused:
        optout_register(
            nhs_number=patient.nhs_number, practice=practice_gp.organisation,  # type: ignore[arg-type]
            route=OptOutRoute.PRACTICE_REQUEST, recorded_by=practice_gp,
        )  # fmt: skip
    assert refused.value.message == "This person is not registered with your practice."
    api = client_for(practice_gp).post(
        "/api/v1/optouts/register", {"nhs_number": patient.nhs_number},
        content_type="application/json",
    )  # fmt: skip
    assert api.status_code == 403
    assert api.json()["error"] == {
        "code": "permission_denied",
        "message": "This person is not registered with your practice.",
    }
    assert Patient.objects.filter(pk=patient.pk).exists()
    assert not OptOut.objects.filter(nhs_number=patient.nhs_number).exists()


def test_the_check_step_refuses_someone_registered_elsewhere_and_shows_nobody(
    practice_gp: User, other_practice: Organisation
) -> None:
    patient = person(registered_gp_ods=other_practice.ods_code)
    response = check_page(client_for(practice_gp), patient.nhs_number)
    body = response.content.decode()
    assert "This person is not registered with your practice." in body
    for shown in ("Ellison", "14 March 1941", "Mill Lane", other_practice.ods_code, "Hillview"):
        assert shown not in body
    assert "Record opt-out" not in body  # no confirm button
    api = client_for(practice_gp).post(
        "/api/v1/optouts/check", {"nhs_number": patient.nhs_number},
        content_type="application/json",
    )  # fmt: skip
    assert api.status_code == 403
    assert "Ellison" not in api.content.decode()


# ------------------------------------------------------------------ the check step


def test_the_check_step_shows_who_the_number_matches_and_is_audited(
    practice_gp: User,
) -> None:
    patient = person()
    response = check_page(client_for(practice_gp), patient.nhs_number, "Phoned in")
    body = response.content.decode()
    assert response.status_code == 200
    for shown in ("Margaret Rose Ellison", "14 March 1941", "4 Mill Lane, Borough Town", "ZZ1 1AA"):
        assert shown in body
    assert "Record opt-out" in body
    (event,) = AuditEvent.objects.filter(
        action=AuditAction.IDENTITY_VIEW, actor_id=practice_gp.public_id
    )
    assert event.nhs_number == patient.nhs_number
    assert event.patient_id == patient.public_id
    assert event.detail["check"] == "opt-out"
    assert OptOut.objects.filter(nhs_number=patient.nhs_number).count() == 0


def test_the_check_step_also_shows_the_practices_own_patient(
    practice: Organisation, practice_gp: User
) -> None:
    patient = person(registered_gp_ods=practice.ods_code)
    body = check_page(client_for(practice_gp), patient.nhs_number).content.decode()
    assert "Margaret Rose Ellison" in body
    assert "Record opt-out" in body


def test_the_check_step_says_plainly_when_the_number_matches_no_record(
    practice_gp: User,
) -> None:
    number = next_nhs_number()
    body = check_page(client_for(practice_gp), number).content.decode()
    assert "This NHS number matches no record held in the shared care record" in body
    assert "Record opt-out" in body
    (event,) = AuditEvent.objects.filter(
        action=AuditAction.IDENTITY_VIEW, actor_id=practice_gp.public_id
    )
    assert (event.nhs_number, event.detail["check"], event.detail["found"]) == (
        number,
        "opt-out",
        False,
    )


def test_changing_the_details_keeps_the_number_and_the_note(practice_gp: User) -> None:
    number = next_nhs_number()
    page = client_for(practice_gp)
    check = check_page(page, number, "Asked at the desk").content.decode()
    assert 'name="step" value="change"' in check
    back = page.post(
        "/optouts/record", {"nhs_number": number, "note": "Asked at the desk", "step": "change"}
    ).content.decode()
    assert "Record an opt-out" in back
    assert f'value="{number}"' in back
    assert ">Asked at the desk</textarea>" in back
    assert not OptOut.objects.exists()


def test_the_api_check_returns_the_identity_and_is_audited(practice_gp: User) -> None:
    patient = person()
    client = client_for(practice_gp)
    response = client.post(
        "/api/v1/optouts/check", {"nhs_number": patient.nhs_number},
        content_type="application/json",
    )  # fmt: skip
    assert response.status_code == 200
    assert response.json() == {
        "nhs_number": patient.nhs_number,
        "found": True,
        "registration": "unknown",
        "family_name": "Ellison",
        "given_names": "Margaret Rose",
        "birth_date": "1941-03-14",
        "address": "4 Mill Lane, Borough Town",
        "postcode": "ZZ1 1AA",
    }
    unknown = client.post(
        "/api/v1/optouts/check", {"nhs_number": next_nhs_number()},
        content_type="application/json",
    ).json()  # fmt: skip
    assert (unknown["found"], unknown["family_name"], unknown["birth_date"]) == (False, "", None)
    events = AuditEvent.objects.filter(
        action=AuditAction.IDENTITY_VIEW, actor_id=practice_gp.public_id
    )
    assert [e.detail["check"] for e in events] == ["opt-out", "opt-out"]


def test_the_api_check_refuses_staff_who_may_not_record(
    hospital_clinician: User, practice_clerk_without_permission: User
) -> None:
    patient = person()
    for user in (hospital_clinician, practice_clerk_without_permission):
        response = client_for(user).post(
            "/api/v1/optouts/check", {"nhs_number": patient.nhs_number},
            content_type="application/json",
        )  # fmt: skip
        assert response.status_code == 403
        assert "Ellison" not in response.content.decode()
    assert not AuditEvent.objects.filter(
        action=AuditAction.IDENTITY_VIEW, nhs_number=patient.nhs_number
    ).exists()


# ------------------------------------------------------------------ flagged for review


def test_an_opt_out_with_unknown_registration_goes_to_the_programmes_review(
    practice_gp: User,
) -> None:
    unregistered, unknown = person(), next_nhs_number()
    page = client_for(practice_gp)
    for number in (unregistered.nhs_number, unknown):
        page.post("/optouts/record", {"nhs_number": number, "step": "confirm"})
        (event,) = change_events(number)
        assert event.detail["needs_review"] is True
        assert event.detail["review_reason"] == "registration-unknown"
    queued = audit_review_queue(scope=GovernanceScope()).filter(
        nhs_number__in=[unregistered.nhs_number, unknown]
    )
    assert queued.count() == 2


def test_an_opt_out_for_the_practices_own_patient_is_not_flagged(
    practice: Organisation, practice_gp: User
) -> None:
    patient = person(registered_gp_ods=practice.ods_code)
    client_for(practice_gp).post(
        "/optouts/record", {"nhs_number": patient.nhs_number, "step": "confirm"}
    )
    (event,) = change_events(patient.nhs_number)
    assert "needs_review" not in event.detail
    assert "review" not in event.detail
    assert not Patient.objects.filter(pk=patient.pk).exists()


def test_the_programmes_privacy_officer_sees_it_in_the_review_queue(
    practice_gp: User, programme: Organisation
) -> None:
    number = next_nhs_number()
    client_for(practice_gp).post("/optouts/record", {"nhs_number": number, "step": "confirm"})
    (event,) = change_events(number)
    officer = User.objects.create_user(
        "privacy.programme", password="a-long-test-password", organisation=programme,
        role="privacy-officer",
    )  # fmt: skip
    queue = client_for(officer).get("/governance/reviews")
    assert queue.status_code == 200
    assert f"/governance/events/{event.id}" in queue.content.decode()
