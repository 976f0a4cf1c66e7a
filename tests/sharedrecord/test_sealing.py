"""Credentials the platform keeps (subscription signing secrets, SMART client secrets) are sealed at
rest: a database dump does not hold them, the platform still uses them, and keys rotate."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from sharedrecord.models import LaunchSystem
from sharedrecord.notifications.models import Subscription
from sharedrecord.sealing import column_sealing, credentials_reseal
from tests.notifications.receiver import Receiver
from tests.notifications.test_delivery import make_subscription

pytestmark = pytest.mark.django_db
JWKS = "https://gp.example/jwks"
SECRET = "a-smart-client-secret-0123456789"


def stored(table: str, column: str, pk: int) -> str:
    """What a database dump would show."""
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "{column}" FROM "{table}" WHERE id = %s', [pk])
        return str(cursor.fetchone()[0])


def launch_system() -> LaunchSystem:
    return LaunchSystem.objects.create(
        name="Borough GP System", issuer="https://gp.example/launch", jwks_url=JWKS,
        smart_fhir_base="https://gp.example/fhir", smart_client_id="ours",
        smart_client_secret=SECRET,
    )  # fmt: skip


def test_a_smart_client_secret_is_not_in_the_database_but_is_read_back() -> None:
    system = launch_system()
    raw = stored("sharedrecord_launchsystem", "smart_client_secret", system.pk)
    assert SECRET not in raw
    assert raw.startswith("gAAAAA")  # a Fernet token
    assert LaunchSystem.objects.get(pk=system.pk).smart_client_secret == SECRET


def test_a_subscriptions_signing_secret_is_not_in_the_database_but_is_read_back() -> None:
    receiver = cast(Receiver, SimpleNamespace(url="https://receiver.example/hook"))
    subscription = make_subscription(receiver)
    raw = stored("notifications_subscription", "secret", subscription.pk)
    assert "s" * 64 not in raw
    assert Subscription.objects.get(pk=subscription.pk).secret == "s" * 64


def test_an_empty_secret_stays_empty() -> None:
    system = LaunchSystem.objects.create(
        name="Launch only", issuer="https://x.example/launch", jwks_url=JWKS
    )
    assert stored("sharedrecord_launchsystem", "smart_client_secret", system.pk) == ""
    assert LaunchSystem.objects.get(pk=system.pk).smart_client_secret == ""


def test_a_new_key_put_first_seals_and_the_old_one_still_opens_until_resealed(
    settings: Any,
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SEALING_KEYS = [old]
    system = launch_system()
    settings.SEALING_KEYS = [new, old]
    assert LaunchSystem.objects.get(pk=system.pk).smart_client_secret == SECRET
    assert credentials_reseal()["sharedrecord.LaunchSystem.smart_client_secret"] == 1
    settings.SEALING_KEYS = [new]  # the old key retired
    assert LaunchSystem.objects.get(pk=system.pk).smart_client_secret == SECRET
    settings.SEALING_KEYS = [old]
    with pytest.raises(ImproperlyConfigured, match="opens under none of SEALING_KEYS"):
        LaunchSystem.objects.get(pk=system.pk)


def test_a_key_that_is_not_a_fernet_key_is_refused_clearly(settings: Any) -> None:
    settings.SEALING_KEYS = ["not-a-key"]
    with pytest.raises(ImproperlyConfigured, match="not a Fernet key"):
        launch_system()


def test_rows_kept_before_sealing_are_sealed_by_the_migration_and_opened_if_reversed() -> None:
    system = launch_system()
    with connection.cursor() as cursor:  # as the column held it before the migration
        cursor.execute(
            "UPDATE sharedrecord_launchsystem SET smart_client_secret = %s WHERE id = %s",
            [SECRET, system.pk],
        )
    step = column_sealing("sharedrecord_launchsystem", "smart_client_secret")
    with connection.schema_editor() as editor:
        step.code(cast(Any, apps), editor)
    assert SECRET not in stored("sharedrecord_launchsystem", "smart_client_secret", system.pk)
    assert LaunchSystem.objects.get(pk=system.pk).smart_client_secret == SECRET
    assert step.reverse_code is not None
    with connection.schema_editor() as editor:
        step.reverse_code(cast(Any, apps), editor)
    assert stored("sharedrecord_launchsystem", "smart_client_secret", system.pk) == SECRET


def test_deploy_check_warns_while_the_key_hangs_on_secret_key(settings: Any) -> None:
    from sharedrecord.checks import credentials_sealed_under_their_own_keys

    settings.DEBUG, settings.SEALING_KEYS = False, []
    assert [m.id for m in credentials_sealed_under_their_own_keys()] == ["sharedrecord.W002"]
    settings.SEALING_KEYS = [Fernet.generate_key().decode()]
    assert credentials_sealed_under_their_own_keys() == []


def test_the_command_prints_a_new_key_and_reseals(capsys: Any) -> None:
    call_command("secrets_reseal", "--new-key")
    Fernet(capsys.readouterr().out.strip())  # a usable key
    launch_system()
    call_command("secrets_reseal")
    assert (
        "sharedrecord.LaunchSystem.smart_client_secret: 1 sealed again" in capsys.readouterr().out
    )


def test_setting_keys_later_still_opens_what_the_derived_key_sealed_until_resealed(
    settings: Any,
) -> None:
    settings.SEALING_KEYS = []  # a deployment that started without them
    system = launch_system()
    key = Fernet.generate_key().decode()
    settings.SEALING_KEYS = [key]  # as W002 asks
    assert LaunchSystem.objects.get(pk=system.pk).smart_client_secret == SECRET
    call_command("secrets_reseal")
    raw = stored("sharedrecord_launchsystem", "smart_client_secret", system.pk)
    assert Fernet(key).decrypt(raw.encode()).decode() == SECRET  # now under the set key


def test_the_migration_step_never_seals_twice() -> None:
    system = launch_system()  # sealed already, as after a first run of the step
    step = column_sealing("sharedrecord_launchsystem", "smart_client_secret")
    with connection.schema_editor() as editor:
        step.code(cast(Any, apps), editor)
    assert LaunchSystem.objects.get(pk=system.pk).smart_client_secret == SECRET
