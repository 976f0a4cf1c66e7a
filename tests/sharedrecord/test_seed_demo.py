"""The demo borough can be loaded any number of times with the same result."""

from __future__ import annotations

import base64
import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from guardian.models import UserObjectPermission
from pytest_django.fixtures import Settings as SettingsWrapper

from sharedrecord import demo
from sharedrecord.models import Organisation, OrganisationKind, StaffRole, User

pytestmark = pytest.mark.django_db


def _snapshot() -> tuple[list[Any], list[Any], list[Any]]:
    orgs = list(Organisation.objects.order_by("ods_code").values())
    users = list(User.objects.order_by("username").values())
    perms = list(UserObjectPermission.objects.order_by("pk").values())
    return orgs, users, perms


def test_seed_demo_is_idempotent(settings: SettingsWrapper) -> None:
    settings.DEBUG = True
    call_command("seed_demo", stdout=StringIO())
    first = _snapshot()
    call_command("seed_demo", stdout=StringIO())
    assert _snapshot() == first


def test_seed_demo_builds_the_borough_and_a_user_for_every_role() -> None:
    call_command("seed_demo", stdout=StringIO())
    kinds = list(Organisation.objects.values_list("kind", flat=True))
    assert kinds.count(OrganisationKind.GP_PRACTICE) == 3
    for kind in ("acute", "community", "mental-health", "social-care", "pharmacy"):
        assert kinds.count(kind) == 1
    assert set(User.objects.values_list("role", flat=True)) == set(StaffRole.values)
    assert all(org.agreement_active() for org in Organisation.objects.all())


def test_demo_passwords_are_printed_and_usable_only_in_development(
    settings: SettingsWrapper,
) -> None:
    settings.DEBUG = False
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert settings.DEMO_PASSWORD not in out.getvalue()
    assert not User.objects.get(username="gp.riverside").has_usable_password()

    settings.DEBUG = True
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert settings.DEMO_PASSWORD in out.getvalue()
    assert User.objects.get(username="gp.riverside").check_password(settings.DEMO_PASSWORD)


def test_gp_practice_staff_who_manage_optouts_hold_the_object_permission() -> None:
    call_command("seed_demo", stdout=StringIO())
    for spec in demo.USERS:
        user = User.objects.get(username=spec.username)
        assert user.organisation is not None
        allowed = user.has_perm("sharedrecord.manage_optouts", user.organisation)
        assert allowed is spec.manages_optouts, spec.username


def test_the_demo_partner_system_reads_through_the_fhir_api_only_in_development(
    settings: SettingsWrapper, client: Any
) -> None:
    from oauth2_provider.models import get_application_model

    from ingestion.management.commands.seed_demo import DEMO_API_CLIENT

    settings.DEBUG = False
    call_command("seed_demo", stdout=StringIO())
    assert not get_application_model().objects.filter(client_id=DEMO_API_CLIENT).exists()
    settings.DEBUG = True
    call_command("seed_demo", stdout=StringIO())
    stored = get_application_model().objects.get(client_id=DEMO_API_CLIENT).client_secret
    call_command("seed_demo", stdout=StringIO())
    assert get_application_model().objects.get(client_id=DEMO_API_CLIENT).client_secret == stored
    answer = client.post(
        "/o/token/", {"grant_type": "client_credentials", "scope": "system/*.read"},
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(
            f"{DEMO_API_CLIENT}:{settings.DEMO_PASSWORD}".encode()).decode(),
    )  # fmt: skip
    assert answer.status_code == 200
    search = client.get(
        "/fhir/R4/Patient", {"identifier": "https://fhir.nhs.uk/Id/nhs-number|9434765919"},
        HTTP_AUTHORIZATION=f"Bearer {answer.json()['access_token']}", HTTP_X_PURPOSE_OF_USE="TREAT",
    )  # fmt: skip
    assert search.status_code == 200
    assert json.loads(b"".join(search.streaming_content))["type"] == "searchset"
