from __future__ import annotations

from typing import Any

import pytest
from guardian.shortcuts import assign_perm

from sharedrecord.models import Organisation, StaffRole, User
from tests.factories import make_organisation


def staff(username: str, organisation: Organisation, role: StaffRole, *, optouts: bool) -> User:
    user = User.objects.create_user(
        username, password="a-long-test-password", organisation=organisation, role=role
    )
    if optouts:
        assign_perm("sharedrecord.manage_optouts", user, organisation)
    return user


@pytest.fixture
def practice(db: None) -> Organisation:
    return make_organisation(ods_code="Z81001", name="Riverside", kind="gp-practice")


@pytest.fixture
def other_practice(db: None) -> Organisation:
    return make_organisation(ods_code="Z81002", name="Hillview", kind="gp-practice")


@pytest.fixture
def practice_gp(practice: Organisation) -> User:
    return staff("gp.own", practice, StaffRole.GP, optouts=True)


@pytest.fixture
def practice_clerk_without_permission(practice: Organisation) -> User:
    return staff("clerk.noperm", practice, StaffRole.ADMIN_CLERK, optouts=False)


@pytest.fixture
def other_practice_gp(other_practice: Organisation) -> User:
    return staff("gp.other", other_practice, StaffRole.GP, optouts=True)


@pytest.fixture
def hospital_clinician(db: None) -> User:
    acute = make_organisation(ods_code="ZAC31", kind="acute")
    user = staff("ae.doc", acute, StaffRole.CLINICAL_PRACTITIONER, optouts=False)
    # Even holding the permission on a hospital does not make it a GP practice.
    assign_perm("sharedrecord.manage_optouts", user, acute)
    return user


PROGRAMME_ODS = "ZSR01"


@pytest.fixture
def programme(db: None, settings: Any) -> Organisation:
    """The programme that runs the record (its ODS code is in GOVERNANCE_ODS_CODES)."""
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME_ODS]
    return make_organisation(ods_code=PROGRAMME_ODS, name="Borough Shared Record", kind="other")


@pytest.fixture
def objections_officer(programme: Organisation) -> User:
    return staff("objections.officer", programme, StaffRole.OBJECTIONS_OFFICER, optouts=False)
