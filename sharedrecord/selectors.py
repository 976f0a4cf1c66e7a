"""Internal reads of the shared record project."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from guardian.shortcuts import get_objects_for_user

from sharedrecord.models import Organisation, OrganisationKind, StaffRole, User

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


def optout_practice_may_record(*, practice: Organisation, registered_gp_ods: str) -> bool:
    """Whether a practice may record an opt-out for a person, and see who the number is.

    Its own registered patient, or someone whose registered practice the record
    does not know (no Patient row, or no registered practice on it): the
    latter goes to the programme's review. Never someone the authoritative
    registration puts with another practice.
    """
    if not registered_gp_ods:
        return True
    return registered_gp_ods == practice.ods_code


def optout_objections_office_for(user: User) -> Organisation | None:
    """The programme organisation for which this user records objections, or None.

    An active objections officer of an organisation in GOVERNANCE_ODS_CODES
    (the programme that runs the record) records objections taken by phone or
    e-mail on behalf of the person's registered practice. No superuser or
    global permission shortcut, and no right to read any practice's registry.
    """
    organisation = user.organisation
    if not user.is_active or user.role != StaffRole.OBJECTIONS_OFFICER:
        return None
    if organisation is None:
        return None
    if organisation.ods_code not in settings.GOVERNANCE_ODS_CODES:
        return None
    return organisation
