"""An opt-out rolled back by PostgreSQL to break a deadlock is recorded all the same.

An opt-out takes the person's lock, then the lock of each number a standing
merge joins to theirs; a feed correcting that person's NHS number takes the
locks the other way round. When the two meet, PostgreSQL ends one transaction
to free the other. The receptionist must not be the one told to try again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from audit.trail import AuditActor
from optout.models import OptOut, OptOutRoute, OptOutStatus
from optout.services import optout_register
from sharedrecord.entries import PATIENT_LOCK_NAMESPACE
from sharedrecord.identity import patients_merge
from sharedrecord.models import Organisation, Patient
from tests.factories import make_patient
from tests.services import database_url

pytestmark = pytest.mark.django_db(transaction=True)

LOCK = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
WAITING = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = %s "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _wait_for_a_waiter(watcher: psycopg.Connection[Any]) -> None:
    deadline = time.monotonic() + 10
    while watcher.execute(WAITING, [PATIENT_LOCK_NAMESPACE]).fetchone() == (0,):
        assert time.monotonic() < deadline, "the opt-out never waited on the joined number"
        time.sleep(0.01)


def test_an_opt_out_caught_in_a_deadlock_is_recorded(
    practice: Organisation, caplog: pytest.LogCaptureFixture
) -> None:
    kept, merged_away = make_patient(), make_patient()
    patients_merge(
        from_nhs_number=merged_away.nhs_number, to_nhs_number=kept.nhs_number,
        source_org=None, blocked=False, actor=AuditActor.system("test"),
    )  # fmt: skip
    outcome: dict[str, Any] = {}

    def opt_out() -> None:
        try:
            outcome["result"] = optout_register(
                nhs_number=merged_away.nhs_number, practice=practice,
                route=OptOutRoute.PRACTICE_REQUEST, recorded_by_system="test",
            )  # fmt: skip
        except Exception as exc:  # the assertion below names it
            outcome["error"] = exc
        finally:
            connection.close()

    url = database_url(settings.DATABASES["default"])
    with (
        caplog.at_level(logging.INFO, logger="sharedrecord.transactions"),
        psycopg.connect(url, autocommit=True) as watcher,
        psycopg.connect(url) as correction,
    ):
        # A correction holds the surviving number and will want the merged-away one.
        correction.execute(LOCK, [PATIENT_LOCK_NAMESPACE, kept.nhs_number])
        thread = threading.Thread(target=opt_out)
        thread.start()
        _wait_for_a_waiter(watcher)  # the opt-out holds its number, waits for the survivor's
        # Returns once PostgreSQL breaks the cycle by ending the opt-out's transaction
        # (it has waited longer, so its deadlock check runs first).
        correction.execute(LOCK, [PATIENT_LOCK_NAMESPACE, merged_away.nhs_number])
        correction.rollback()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert "error" not in outcome, repr(outcome.get("error"))
    # It was caught in the deadlock, and run again.
    assert [r.getMessage() for r in caplog.records if r.name == "sharedrecord.transactions"] == [
        "optout_register ended by a deadlock; running it again"
    ]
    assert outcome["result"].changed
    optout = OptOut.objects.get(nhs_number=merged_away.nhs_number)
    assert optout.status == OptOutStatus.OPTED_OUT
    assert not Patient.objects.filter(nhs_number__in=[kept.nhs_number, merged_away.nhs_number])
