"""A person's lock id, which PostgreSQL writes into its log and errors, gives away no NHS number.

PostgreSQL names the advisory locks in a deadlock's detail ("advisory lock
[db,7401,<id>,2]") and in pg_locks. The id was hashtext(NHS number), which
anyone can compute for every possible number and so read back.
"""

from __future__ import annotations

import psycopg
import pytest
from django.conf import settings
from django.db import transaction
from django.test import override_settings

from sharedrecord.entries import PATIENT_LOCK_NAMESPACE, patient_lock, patient_lock_id
from tests.factories import next_nhs_number
from tests.services import database_url

HELD = (
    "SELECT objid::bigint FROM pg_locks "
    "WHERE locktype = 'advisory' AND granted AND classid = %s AND objsubid = 2 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


@pytest.mark.django_db
def test_the_lock_postgresql_shows_is_keyed_not_a_plain_hash_of_the_number() -> None:
    number = next_nhs_number()
    url = database_url(settings.DATABASES["default"])
    with (
        psycopg.connect(url, autocommit=True) as watcher,
        transaction.atomic(),
    ):  # held till the end
        patient_lock(nhs_number=number)
        (shown,) = [row[0] for row in watcher.execute(HELD, [PATIENT_LOCK_NAMESPACE])]
        row = watcher.execute("SELECT hashtext(%s)::bigint", [number]).fetchone()
    assert row is not None
    assert shown != row[0] & 0xFFFFFFFF  # what anyone can compute from the number
    assert shown == patient_lock_id(nhs_number=number) & 0xFFFFFFFF


def test_the_lock_id_depends_on_the_secret_key_and_the_number() -> None:
    number, other = next_nhs_number(), next_nhs_number()
    ours = patient_lock_id(nhs_number=number)
    assert ours == patient_lock_id(nhs_number=number)  # every process meets on the same lock
    assert ours != patient_lock_id(nhs_number=other)
    with override_settings(SECRET_KEY="another deployment's secret key, fifty characters+"):
        assert patient_lock_id(nhs_number=number) != ours
