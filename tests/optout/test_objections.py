"""The programme team records objections taken by phone or e-mail for the person's practice."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent
from optout.models import OptOut, OptOutRoute, OptOutStatus
from sharedrecord.access import optout_objections_office_for
from sharedrecord.models import Organisation, Patient, StaffRole, User
from tests.factories import client_for, make_organisation, make_patient, next_nhs_number
from tests.optout.conftest import staff

pytestmark = pytest.mark.django_db


def person(registered_gp_ods: str = "") -> Patient:
    return make_patient(
        nhs_number=next_nhs_number(),
        family_name="Ellison",
        given_names="Margaret",
        birth_date=datetime.date(1941, 3, 14),
        address="4 Mill Lane, Borough Town",
        registered_gp_ods=registered_gp_ods,
    )


def objection_page(client: Client, step: str, **fields: str) -> Any:
    data = {"received": "phone", "practice": "", "note": "", **fields, "step": step}
    return client.post("/optouts/objections/", data)


def objection_api(client: Client, path: str = "", **fields: str) -> Any:
    return client.post(
        f"/api/v1/optouts/objections{path}",
        {"received": "email", **fields},
        content_type="application/json",
    )


# ------------------------------------------------------------------ who may


def test_only_objections_officers_of_the_programme_may_record_objections(
    programme: Organisation, objections_officer: User, practice: Organisation, practice_gp: User
) -> None:
    assert optout_objections_office_for(objections_officer) == programme
    outsider = staff("objections.elsewhere", practice, StaffRole.OBJECTIONS_OFFICER, optouts=True)
    privacy = staff("privacy.programme", programme, StaffRole.PRIVACY_OFFICER, optouts=False)
    root = User.objects.create_superuser(
        "root.objections", password="x-long-password-9", organisation=programme,
        role=StaffRole.SYSTEM_ADMIN,
    )  # fmt: skip
    for user in (outsider, privacy, practice_gp, root):
        assert optout_objections_office_for(user) is None, user.username
    objections_officer.is_active = False
    assert optout_objections_office_for(objections_officer) is None


def test_everyone_else_gets_403_from_the_objection_pages_and_api(
    programme: Organisation, practice_gp: User, hospital_clinician: User
) -> None:
    patient = person("Z81001")
    for user in (practice_gp, hospital_clinician):
        client = client_for(user)
        assert client.get("/optouts/objections/").status_code == 403
        assert objection_page(client, "confirm", nhs_number=patient.nhs_number).status_code == 403
        api = objection_api(client, nhs_number=patient.nhs_number)
        assert api.status_code == 403
        assert api.json()["error"]["code"] == "permission_denied"
        assert objection_api(client, "/check", nhs_number=patient.nhs_number).status_code == 403
    assert Patient.objects.filter(pk=patient.pk).exists()
    assert not AuditEvent.objects.filter(
        action=AuditAction.IDENTITY_VIEW, nhs_number=patient.nhs_number
    ).exists()


def test_the_programme_team_cannot_list_view_or_export_a_practices_registry(
    objections_officer: User, practice: Organisation
) -> None:
    client = client_for(objections_officer)
    patient = person(practice.ods_code)
    objection_api(client, nhs_number=patient.nhs_number)
    entry = OptOut.objects.get(nhs_number=patient.nhs_number)
    for url in ("/optouts/", f"/optouts/{entry.public_id}", f"/optouts/{entry.public_id}/opt-in"):
        assert client.get(url).status_code == 403, url
    for url in (
        "/api/v1/optouts/",
        f"/api/v1/optouts/{entry.public_id}",
        "/api/v1/optouts/export.csv",
    ):
        assert client.get(url).status_code == 403, url
    withdraw = client.post(
        "/api/v1/optouts/withdraw", {"nhs_number": patient.nhs_number},
        content_type="application/json",
    )  # fmt: skip
    assert withdraw.status_code == 403


# ------------------------------------------------------------------ the pages


def test_an_objection_by_phone_is_checked_then_recorded_for_the_registered_practice(
    objections_officer: User, practice: Organisation, practice_gp: User
) -> None:
    patient = person(practice.ods_code)
    page = client_for(objections_officer)
    form = page.get("/optouts/objections/")
    assert form.status_code == 200
    assert "Record an objection" in form.content.decode()

    check = objection_page(page, "check", nhs_number=patient.nhs_number, note="Rang the helpline")
    body = check.content.decode()
    for shown in ("Margaret Ellison", "14 March 1941", "4 Mill Lane", "Riverside"):
        assert shown in body
    assert "Record objection" in body
    (viewed,) = AuditEvent.objects.filter(
        action=AuditAction.IDENTITY_VIEW, actor_id=objections_officer.public_id
    )
    assert viewed.detail["check"] == "opt-out"
    assert Patient.objects.filter(pk=patient.pk).exists()  # nothing happens before confirming

    done = objection_page(page, "confirm", nhs_number=patient.nhs_number, note="Rang the helpline")
    assert done.status_code == 302
    assert "Objection recorded" in page.get(done["Location"]).content.decode()
    entry = OptOut.objects.get(nhs_number=patient.nhs_number)
    assert (entry.practice, entry.status, entry.route) == (
        practice,
        OptOutStatus.OPTED_OUT,
        OptOutRoute.PROGRAMME_PHONE,
    )
    assert entry.changes.get().recorded_by == objections_officer
    assert not Patient.objects.filter(pk=patient.pk).exists()
    (event,) = AuditEvent.objects.filter(
        action=AuditAction.OPTOUT_CHANGE, nhs_number=patient.nhs_number
    )
    assert (event.actor_id, event.patient_gp_ods) == (objections_officer.public_id, "Z81001")
    assert "needs_review" not in event.detail
    assert "review" not in event.detail

    # The practice sees it on its own list and history, and may opt the person back in.
    own = client_for(practice_gp)
    assert patient.nhs_number[:3] in own.get("/optouts/").content.decode()
    detail = own.get(f"/optouts/{entry.public_id}").content.decode()
    assert "Objection taken by the programme team by phone" in detail
    back = own.post(f"/optouts/{entry.public_id}/opt-in", {"step": "confirm"})
    assert back.status_code == 302
    entry.refresh_from_db()
    assert entry.status == OptOutStatus.OPTED_IN


def test_with_unknown_registration_the_officer_names_the_practice_and_it_is_flagged(
    objections_officer: User, practice: Organisation
) -> None:
    patient = person()
    page = client_for(objections_officer)
    unnamed = objection_page(page, "check", nhs_number=patient.nhs_number).content.decode()
    assert "Enter the ODS code of the person&#x27;s GP practice" in unnamed
    assert "Record objection" not in unnamed
    hospital = make_organisation(kind="acute")
    wrong = objection_page(
        page, "check", nhs_number=patient.nhs_number, practice=hospital.ods_code
    ).content.decode()
    assert "Enter the ODS code of a GP practice" in wrong

    check = objection_page(
        page, "check", nhs_number=patient.nhs_number, practice="z81001", received="email"
    ).content.decode()
    assert "Margaret Ellison" in check
    assert "Riverside" in check
    assert 'name="practice" value="Z81001"' in check
    objection_page(
        page, "confirm", nhs_number=patient.nhs_number, practice="Z81001", received="email"
    )
    entry = OptOut.objects.get(nhs_number=patient.nhs_number)
    assert (entry.practice, entry.route) == (practice, OptOutRoute.PROGRAMME_EMAIL)
    (event,) = AuditEvent.objects.filter(
        action=AuditAction.OPTOUT_CHANGE, nhs_number=patient.nhs_number
    )
    assert event.detail["needs_review"] is True
    assert event.detail["review_reason"] == "registration-unknown"


def test_a_named_practice_other_than_the_registered_one_is_refused(
    objections_officer: User, practice: Organisation, other_practice: Organisation
) -> None:
    patient = person(practice.ods_code)
    body = objection_page(
        client_for(objections_officer), "confirm", nhs_number=patient.nhs_number,
        practice=other_practice.ods_code,
    ).content.decode()  # fmt: skip
    assert "registered with a different practice" in body
    assert not OptOut.objects.filter(nhs_number=patient.nhs_number).exists()
    assert Patient.objects.filter(pk=patient.pk).exists()


def test_changing_the_details_keeps_what_was_typed(objections_officer: User) -> None:
    number = next_nhs_number()
    back = objection_page(
        client_for(objections_officer), "change", nhs_number=number, note="Sent an e-mail",
        practice="Z81001", received="email",
    ).content.decode()  # fmt: skip
    assert f'value="{number}"' in back
    assert ">Sent an e-mail</textarea>" in back
    assert 'value="Z81001"' in back
    assert 'value="email" checked' in back


# ------------------------------------------------------------------ the API


def test_the_api_checks_and_records_an_objection(
    objections_officer: User, practice: Organisation
) -> None:
    patient = person(practice.ods_code)
    client = client_for(objections_officer)
    check = objection_api(client, "/check", nhs_number=patient.nhs_number)
    assert check.status_code == 200
    assert check.json() == {
        "nhs_number": patient.nhs_number,
        "found": True,
        "registration": "known",
        "practice": "Z81001",
        "practice_name": "Riverside",
        "family_name": "Ellison",
        "given_names": "Margaret",
        "birth_date": "1941-03-14",
        "address": "4 Mill Lane, Borough Town",
        "postcode": "",
    }
    recorded = objection_api(client, nhs_number=patient.nhs_number, note="By e-mail")
    assert recorded.status_code == 201
    assert recorded.json() == {
        "nhs_number": patient.nhs_number,
        "status": "opted-out",
        "practice": "Z81001",
        "route": "programme-email",
    }
    # The record is gone, so its registration is now unknown: the officer names the practice.
    assert objection_api(client, nhs_number=patient.nhs_number).status_code == 400
    again = objection_api(client, nhs_number=patient.nhs_number, practice="Z81001")
    assert (again.status_code, again.json()) == (201, recorded.json())  # nothing changes
    assert OptOut.objects.get(nhs_number=patient.nhs_number).changes.count() == 1
    assert [
        e.detail["check"]
        for e in AuditEvent.objects.filter(
            action=AuditAction.IDENTITY_VIEW, actor_id=objections_officer.public_id
        )
    ] == ["opt-out"]


def test_the_api_asks_for_the_practice_when_registration_is_unknown(
    objections_officer: User, practice: Organisation
) -> None:
    number = next_nhs_number()
    client = client_for(objections_officer)
    missing = objection_api(client, nhs_number=number)
    assert missing.status_code == 400
    assert missing.json()["error"]["fields"] == {
        "practice": [
            "Enter the ODS code of the person's GP practice: "
            "the shared care record does not know where they are registered."
        ]
    }
    assert number not in missing.content.decode()
    recorded = objection_api(client, nhs_number=number, practice="Z81001")
    assert recorded.status_code == 201
    assert OptOut.objects.get(nhs_number=number).practice == practice


def test_the_api_refuses_a_bad_route_or_number(objections_officer: User) -> None:
    client = client_for(objections_officer)
    assert objection_api(client, nhs_number=next_nhs_number(), received="fax").status_code == 400
    bad = objection_api(client, nhs_number="9912003890", practice="Z81001")
    assert bad.status_code == 400
    assert "9912003890" not in bad.content.decode()
