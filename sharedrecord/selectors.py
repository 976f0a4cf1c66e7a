"""Internal reads of the shared record project."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from guardian.shortcuts import get_objects_for_user

from sharedrecord.models import Organisation, OrganisationKind, User

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


def optout_practice_for(user: User) -> Organisation | None:
    """The GP practice whose opt-outs this user may record, or None.

    The user must belong to a GP practice and hold the object permission on it
    (granted in the admin); superusers and global permissions do not count.
    """
    practice = user.organisation
    if practice is None or practice.kind != OrganisationKind.GP_PRACTICE:
        return None
    allowed = get_objects_for_user(
        user,
        "sharedrecord.manage_optouts",
        klass=Organisation.objects.filter(pk=practice.pk),
        with_superuser=False,
        accept_global_perms=False,
    ).exists()
    return practice if allowed else None
