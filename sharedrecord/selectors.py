"""Readiness: whether the services the platform needs answer (the /readyz probe)."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

_migrations_seen_applied = False


def readiness_checks() -> dict[str, bool]:
    """Whether PostgreSQL answers, every migration is applied and Redis answers.

    A positive migrations answer is remembered for the life of the process:
    migrations are applied before a release starts serving, never behind it.
    """
    global _migrations_seen_applied
    checks = {"database": False, "migrations": False, "redis": False}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = True
        if not _migrations_seen_applied:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
            _migrations_seen_applied = not plan
        checks["migrations"] = _migrations_seen_applied
    except DatabaseError:
        pass
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1
        )
        checks["redis"] = bool(client.ping())
    except (redis.RedisError, OSError):
        pass
    return checks
