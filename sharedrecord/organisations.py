"""Organisations and their staff: who they are, what they were granted, when their feed last spoke.

Writes only (STYLE.md section 1); each is idempotent: repeating it changes nothing.
"""

from __future__ import annotations

import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from guardian.shortcuts import assign_perm

from audit.directory import Names
from sharedrecord.models import (
    Organisation,
    StaffRole,
    User,
)


@transaction.atomic
def organisation_upsert(
    *,
    ods_code: str,
    name: str,
    kind: str,
    dsa_start: datetime.date | None,
    dsa_end: datetime.date | None = None,
    phone: str | None = None,
) -> Organisation:
    """Create or update the organisation with this ODS code; repeating it changes nothing.

    A phone of None leaves the organisation's phone number as it is.
    """
    org = Organisation.objects.filter(ods_code=ods_code.upper()).first() or Organisation(
        ods_code=ods_code.upper()
    )
    org.name, org.kind, org.dsa_start, org.dsa_end = name, kind, dsa_start, dsa_end
    if phone is not None:
        org.phone = phone
    org.full_clean()
    org.save()
    return org


@transaction.atomic
def staff_user_upsert(
    *,
    username: str,
    organisation: Organisation,
    role: StaffRole,
    first_name: str,
    last_name: str,
    password: str | None,
) -> User:
    """Create or update a member of staff.

    A password of None leaves an existing password alone and gives a new
    user an unusable one (to be set through the admin's reset).
    """
    user = User.objects.filter(username=username).first() or User(username=username)
    user.organisation, user.role = organisation, role
    user.first_name, user.last_name = first_name, last_name
    # Only re-hash when the password differs, so re-running the seed is a no-op.
    if password is not None and not user.check_password(password):
        user.set_password(password)
    elif user.pk is None:
        user.set_unusable_password()
    user.full_clean()
    user.save()
    return user


def organisation_grant_optout_management(*, user: User, organisation: Organisation) -> None:
    """Let a member of a GP practice record opt-outs for that practice (idempotent)."""
    assign_perm("sharedrecord.manage_optouts", user, organisation)


def organisation_feed_seen(*, organisation_id: int) -> None:
    """Note that an organisation's feed delivered data now (for the sources panel).

    Called after a message commits, in its own short statement; it skips the
    write when the time was noted in the last minute, so a busy feed does not
    queue its workers on the organisation's row.
    """
    now = timezone.now()
    Organisation.objects.filter(pk=organisation_id).filter(
        Q(last_feed_at__isnull=True) | Q(last_feed_at__lt=now - datetime.timedelta(minutes=1))
    ).update(last_feed_at=now)


def directory_names(usernames: set[str], ods_codes: set[str]) -> Names:
    """Staff names, organisation names and role labels for the governance pages.

    Two queries whatever the number of events: one for the people, one for
    the organisations. Someone with no name on their account reads as their
    username.
    """
    people = {
        username: f"{first} {last}".strip() or username
        for username, first, last in User.objects.filter(username__in=usernames).values_list(
            "username", "first_name", "last_name"
        )
    }
    organisations = dict(
        Organisation.objects.filter(ods_code__in=ods_codes).values_list("ods_code", "name")
    )
    return Names(people, organisations, {str(v): str(label) for v, label in StaffRole.choices})
