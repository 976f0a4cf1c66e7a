"""A transaction PostgreSQL ended to break a deadlock, run again.

Two transactions that each hold a person's lock and want the other's (an
opt-out taking the numbers a merge joins, a feed correcting an NHS number, two
import processes) wait on each other until PostgreSQL ends one of them after
`deadlock_timeout`. Nothing of the ended one stays and it holds no lock any
more, so running it again simply waits its turn. Wrapped here, a receptionist's
opt-out or an import batch is not the one that fails.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import psycopg.errors
from django.db import OperationalError, connection

logger = logging.getLogger(__name__)

DEADLOCK_RETRIES = 5

P = ParamSpec("P")
T = TypeVar("T")


def deadlock_retried(func: Callable[P, T]) -> Callable[P, T]:
    """`func`, run again (up to DEADLOCK_RETRIES times in all) when a deadlock ends its transaction.

    `func` must open its own transaction (`transaction.atomic`) and change
    nothing outside the database before it commits. Called inside an outer
    transaction it runs once: the outer transaction is what was ended, and
    only its owner can run it again.
    """

    @functools.wraps(func)
    def retried(*args: P.args, **kwargs: P.kwargs) -> T:
        if not connection.in_atomic_block:
            for _ in range(DEADLOCK_RETRIES - 1):
                try:
                    return func(*args, **kwargs)
                except OperationalError as exc:
                    if not isinstance(exc.__cause__, psycopg.errors.DeadlockDetected):
                        raise
                    logger.info("%s ended by a deadlock; running it again", func.__qualname__)
        return func(*args, **kwargs)  # the last attempt, or the only one inside a transaction

    return retried
