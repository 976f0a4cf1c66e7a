"""Single sign-on's rules and its account service: who signs in as what, and assurance."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.test import Client, override_settings

from audit.models import AuditAction, AuditEvent
from audit.trail import AuditContext
from sharedrecord.access import (
    assurance_level_of,
    assurance_may_read,
    sso_profile_refusal,
    sso_role_for,
)
from sharedrecord.models import StaffIdentity, StaffRole, User
from sharedrecord.sso.claims import RoleProfile
from sharedrecord.sso.signin import ProfileRefused, sso_sign_in
from sharedrecord.sso.views import SIGN_IN
from tests.factories import fed_person, make_organisation

ISSUER = "https://identity.example.test"
GP = RoleProfile("5551", "ZSSO2", "S8000:G8000:R0260", "General Medical Practitioner")
NURSE = RoleProfile("5552", "ZSSO1", "S8000:G8000:R8001", "Nurse Access Role")


@pytest.fixture
def organisations(db: None) -> None:
    make_organisation(ods_code="ZSSO1", name="Borough Hospital")
    make_organisation(ods_code="ZSSO2", name="Borough Practice", kind="gp-practice")
    make_organisation(ods_code="ZSSO9", name="Former Partner", dsa_end=datetime.date(2025, 6, 1))


def _sign_in(profile: RoleProfile, listed: list[RoleProfile], **claims: Any) -> User:
    return sso_sign_in(
        issuer=ISSUER, subject="555000111", profile=profile, listed=listed,
        claims={"given_name": "Ada", "family_name": "One", **claims}, acr="AAL3_ANY", level=3,
        context=AuditContext(),
    )  # fmt: skip


def test_a_job_role_code_signs_in_as_its_mapped_role_and_nothing_else() -> None:
    assert sso_role_for("S8000:G8000:R8000") == StaffRole.CLINICAL_PRACTITIONER
    assert sso_role_for("R0260") == StaffRole.GP
    assert sso_role_for("S8000:G8000:R9999") == ""
    assert sso_role_for("R8015") == ""  # systems support: never through single sign-on
    assert sso_role_for("") == ""


def test_the_role_map_setting_replaces_entries_but_never_grants_system_admin() -> None:
    with override_settings(SSO_ROLE_MAP={"R9999": "nurse", "R8000": "pharmacist"}):
        assert sso_role_for("S8000:G8000:R9999") == StaffRole.NURSE
        assert sso_role_for("R8000") == StaffRole.PHARMACIST
    with override_settings(SSO_ROLE_MAP={"R9999": "system-admin", "R9998": "superuser"}):
        assert sso_role_for("R9999") == ""
        assert sso_role_for("R9998") == ""


def test_a_profile_is_refused_for_an_unknown_organisation(organisations: None) -> None:
    assert sso_profile_refusal(organisation=None, role="gp") == "unknown-organisation"


def test_a_profile_is_refused_without_an_active_agreement(organisations: None) -> None:
    from sharedrecord.models import Organisation

    former = Organisation.objects.get(ods_code="ZSSO9")
    assert sso_profile_refusal(organisation=former, role="gp") == "no-agreement"


def test_a_profile_is_refused_without_a_mapped_role(organisations: None) -> None:
    from sharedrecord.models import Organisation

    hospital = Organisation.objects.get(ods_code="ZSSO1")
    assert sso_profile_refusal(organisation=hospital, role="") == "unmapped-role"
    assert sso_profile_refusal(organisation=hospital, role="nurse") == ""


def test_the_assurance_level_comes_from_the_acr() -> None:
    assert assurance_level_of("AAL3_ANY") == 3
    assert assurance_level_of("AAL1_USERPASS") == 1
    assert assurance_level_of("AAL2") == 2
    assert assurance_level_of("urn:example:smartcard") == 0
    assert assurance_level_of("") == 0
    with override_settings(SSO_ACR_LEVELS={"urn:example:smartcard": 3}):
        assert assurance_level_of("urn:example:smartcard") == 3


def test_reading_needs_the_configured_minimum_level() -> None:
    with override_settings(RECORD_MIN_AAL=3):
        assert assurance_may_read(3)
        assert not assurance_may_read(2)


def test_the_first_sign_in_makes_an_account_with_only_what_the_claim_says(
    organisations: None,
) -> None:
    user = _sign_in(NURSE, [GP, NURSE], email="ada.one@example.nhs.test")
    assert (user.organisation.ods_code, user.role) == ("ZSSO1", StaffRole.NURSE)  # type: ignore[union-attr]
    assert (user.first_name, user.last_name, user.email) == (
        "Ada",
        "One",
        "ada.one@example.nhs.test",
    )
    assert not user.is_staff
    assert not user.is_superuser
    assert user.is_active
    assert not user.has_usable_password()
    assert user.username == "555000111@5552"
    identity = StaffIdentity.objects.get(user=user)
    assert (identity.issuer, identity.role_profile_id, identity.role_code) == (
        ISSUER, "5552", "S8000:G8000:R8001",
    )  # fmt: skip
    event = AuditEvent.objects.filter(action=AuditAction.SIGN_IN).latest("id")
    assert (event.actor_name, event.actor_org_ods, event.actor_role) == (
        "555000111@5552", "ZSSO1", "nurse",
    )  # fmt: skip
    assert event.detail == {
        "via": "oidc", "role_profile": "5552", "role_code": "S8000:G8000:R8001",
        "acr": "AAL3_ANY", "assurance_level": 3,
    }  # fmt: skip


def test_each_sign_in_brings_the_account_up_to_date(organisations: None) -> None:
    first = _sign_in(NURSE, [GP, NURSE])
    first.is_staff = True  # given by hand in the admin: the claim says otherwise
    first.save()
    moved = RoleProfile("5552", "ZSSO1", "S8000:G8000:R8000")
    again = _sign_in(moved, [moved], given_name="Adah", email="not-an-address")
    assert again.pk == first.pk
    assert (again.role, again.first_name, again.email, again.is_staff) == (
        StaffRole.CLINICAL_PRACTITIONER, "Adah", "", False,
    )  # fmt: skip


def test_profiles_the_provider_no_longer_lists_are_deactivated(organisations: None) -> None:
    gp = _sign_in(GP, [GP, NURSE])
    _sign_in(NURSE, [NURSE])
    gp.refresh_from_db()
    assert not gp.is_active
    assert _sign_in(GP, [GP, NURSE]).is_active


def test_a_refused_profile_makes_no_account_and_is_audited(organisations: None) -> None:
    ended = RoleProfile("5553", "ZSSO9", "R8000")
    with pytest.raises(ProfileRefused) as refused:
        _sign_in(ended, [ended])
    assert refused.value.code == "no-agreement"
    assert not StaffIdentity.objects.filter(role_profile_id="5553").exists()
    event = AuditEvent.objects.filter(action=AuditAction.SIGN_IN_FAILED).latest("id")
    assert event.detail["reason"] == "no-agreement"
    assert event.detail["role_profile"] == "5553"
    assert event.outcome == "denied"


# ------------------------------------------------------------------ assurance on the pages


@pytest.fixture
def weakly_signed_in(organisations: None) -> tuple[Client, Any]:
    user = _sign_in(NURSE, [NURSE])
    client = Client()
    client.force_login(user)
    session = client.session
    session[SIGN_IN] = {"via": "oidc", "assurance_level": 1}
    session.save()
    return client, fed_person("sso-weak")


@override_settings(RECORD_MIN_AAL=3)
def test_a_weak_sign_in_may_search_but_not_read_and_is_told_why(
    weakly_signed_in: tuple[Client, Any],
) -> None:
    client, patient = weakly_signed_in
    found = client.post("/search", {"nhs_number": patient.nhs_number})
    assert found.status_code == 200
    assert "1 person found" in found.content.decode()
    for path in (f"/access/{patient.public_id}/", f"/record/{patient.public_id}/"):
        refused = client.get(path)
        assert refused.status_code == 403
        assert "needs a stronger sign-in (a smartcard or equivalent)" in refused.content.decode()


@override_settings(RECORD_MIN_AAL=3)
def test_a_strong_sign_in_reads(weakly_signed_in: tuple[Client, Any]) -> None:
    client, patient = weakly_signed_in
    session = client.session
    session[SIGN_IN] = {"via": "oidc", "assurance_level": 3}
    session.save()
    assert client.get(f"/access/{patient.public_id}/").status_code == 200
