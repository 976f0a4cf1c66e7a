"""Read traffic on a PostgreSQL streaming replica, when it is fresh enough (DATABASE_REPLICA_URL).

The rules (README "Scaling past one machine"):

1. Writes, and everything in a request that is not a GET or HEAD, use the primary.
2. Only record pages, the FHIR read API and governance reads
   (`REPLICA_READ_PREFIXES`) may read from the replica, and only while the
   replica's replay lag is at most REPLICA_MAX_LAG_SECONDS (measured once per
   request on the replica itself; any error measuring it means the primary).
3. Read-after-write stays on the primary: once a request writes through the
   ORM, its later reads go to the primary; and a session that wrote is kept on
   the primary for REPLICA_STICKY_SECONDS afterwards, so what a person just did
   (recorded a basis, an opt-out) is what they see next.
4. What must never be stale is always read on the primary: sessions, sign-in
   and accounts, access bases, OAuth tokens and grants, permissions and
   lockouts (PRIMARY_ONLY_APPS, PRIMARY_ONLY_MODELS). Audit events are written
   on the primary in the caller's transaction (audit/trail.py), never here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

REPLICA = "replica"
PRIMARY = "default"
REPLICA_READ_PREFIXES = ("/record/", "/fhir/R4/", "/governance/", "/api/v1/audit/")
PRIMARY_ONLY_APPS = frozenset({"sessions", "auth", "oauth2_provider", "axes", "guardian", "admin"})
PRIMARY_ONLY_MODELS = frozenset({("sharedrecord", "user"), ("sharedrecord", "accessbasis")})
STICKY_SESSION_KEY = "db_primary_until"

LAG_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END
"""


@dataclass
class _Reads:
    """What this request may read from: decided once, lazily, at its first routed read."""

    allowed: bool
    wrote: bool = False
    fresh: bool | None = None
    used_replica: bool = False


_reads: ContextVar[_Reads | None] = ContextVar("replica_reads", default=None)


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def replica_lag_seconds() -> float | None:
    """The replica's replay lag in seconds; None if it is not a replica or cannot be asked."""
    try:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(LAG_SQL)
            in_recovery, lag = cursor.fetchone()
    except DatabaseError:
        logger.warning("replica: lag check failed; reading from the primary")
        return None
    if not in_recovery or lag is None:
        return None
    return max(0.0, float(lag))


def _replica_fresh() -> bool:
    lag = replica_lag_seconds()
    return lag is not None and lag <= settings.REPLICA_MAX_LAG_SECONDS


@contextmanager
def replica_reads(*, allowed: bool = True) -> Iterator[_Reads]:
    """Let the ORM reads inside this block use the replica under the rules above."""
    reads = _Reads(allowed=allowed and replica_configured())
    token = _reads.set(reads)
    try:
        yield reads
    finally:
        _reads.reset(token)


def read_alias() -> str:
    """The database this request's reads go to now (for raw SQL reads)."""
    reads = _reads.get()
    if reads is None or not reads.allowed or reads.wrote:
        return PRIMARY
    if reads.fresh is None:
        reads.fresh = _replica_fresh()
    if reads.fresh:
        reads.used_replica = True
        return REPLICA
    return PRIMARY


def _primary_only(model: Any) -> bool:
    meta = model._meta
    return meta.app_label in PRIMARY_ONLY_APPS or (meta.app_label, meta.model_name) in (
        PRIMARY_ONLY_MODELS
    )


class ReplicaRouter:
    """Django's database router (settings DATABASE_ROUTERS)."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        if _primary_only(model):
            return PRIMARY
        return read_alias()

    def db_for_write(self, model: Any, **hints: Any) -> str:
        reads = _reads.get()
        if reads is not None and model._meta.app_label != "sessions":
            reads.wrote = True
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the replica is a copy of the primary: the same rows

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == PRIMARY


class ReplicaReadsMiddleware:
    """Route a GET or HEAD under REPLICA_READ_PREFIXES by the rules above (after sessions)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        sticky_until = float(session.get(STICKY_SESSION_KEY, 0)) if session is not None else 0
        allowed = (
            request.method in ("GET", "HEAD")
            and request.path.startswith(REPLICA_READ_PREFIXES)
            and sticky_until < time.time()
        )
        with replica_reads(allowed=allowed) as reads:
            response = self.get_response(request)
        # Only a session the request already has (a signed-in member of staff): a bearer
        # client's write (its token) would otherwise be handed a session that is read
        # and saved, with a durable commit, on every later read that sends it back.
        if reads.wrote and session is not None and session.session_key is not None:
            session[STICKY_SESSION_KEY] = time.time() + settings.REPLICA_STICKY_SECONDS
        if reads.used_replica:
            response["X-Read-From"] = "replica"
        return response
