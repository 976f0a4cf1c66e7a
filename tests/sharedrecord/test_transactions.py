"""deadlock_retried runs a transaction again only when a deadlock ended it, and only its own.

A real deadlock between an opt-out and a feed is in tests/optout/test_deadlock.py;
these pin the wrapper's rules with the error PostgreSQL raises.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg.errors
import pytest
from django.db import OperationalError, transaction

from sharedrecord.transactions import DEADLOCK_RETRIES, deadlock_retried


def _failing(error: Exception, calls: list[int], *, until: int) -> Callable[[], str]:
    """A unit of work that fails with `error` until its `until`th call."""

    @deadlock_retried
    def work() -> str:
        calls.append(1)
        if len(calls) < until:
            raise error
        return "committed"

    return work


def _deadlock() -> OperationalError:
    error = OperationalError("deadlock detected")
    error.__cause__ = psycopg.errors.DeadlockDetected("deadlock detected")
    return error


def test_a_transaction_a_deadlock_ended_runs_again() -> None:
    calls: list[int] = []
    assert _failing(_deadlock(), calls, until=3)() == "committed"
    assert len(calls) == 3


def test_it_gives_up_after_the_last_attempt() -> None:
    calls: list[int] = []
    with pytest.raises(OperationalError):
        _failing(_deadlock(), calls, until=DEADLOCK_RETRIES + 1)()
    assert len(calls) == DEADLOCK_RETRIES


def test_any_other_database_error_is_raised_at_once() -> None:
    calls: list[int] = []
    with pytest.raises(OperationalError):
        _failing(OperationalError("server closed the connection"), calls, until=2)()
    assert len(calls) == 1


@pytest.mark.django_db
def test_inside_an_outer_transaction_it_runs_once() -> None:
    calls: list[int] = []
    with pytest.raises(OperationalError), transaction.atomic():
        _failing(_deadlock(), calls, until=2)()
    assert len(calls) == 1
