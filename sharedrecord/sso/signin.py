"""Signing a member of staff in through single sign-on: the account of one role profile.

Each role profile signs in as its own account (StaffIdentity), holding exactly the
profile's organisation and the role its job role code maps to (access.sso_role_for),
never a staff or superuser flag and never a usable password. The account is made on
the profile's first sign-in and brought up to date on every one; the person's accounts
for profiles the provider no longer lists are deactivated.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditActor, AuditContext, audit_event_record
from sharedrecord.access import sso_profile_refusal, sso_role_for
from sharedrecord.auditing import actor_for
from sharedrecord.models import Organisation, StaffIdentity, User
from sharedrecord.sso.claims import RoleProfile

_UNSAFE = re.compile(r"[^\w.@+-]")


class ProfileRefused(Exception):
    """The chosen role profile may not sign in; `code` says why (access.sso_profile_refusal)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _username(subject: str, profile: RoleProfile) -> str:
    """`<subject>@<person_roleid>`: the profile is in the username, so every event names it."""
    return _UNSAFE.sub("-", f"{subject[:90]}@{profile.person_roleid[:50]}")


def _free_username(wanted: str, issuer: str, subject: str) -> str:
    # Two subjects the same once made safe (or of two providers): keep them apart.
    if not User.objects.filter(username=wanted).exists():
        return wanted
    return f"{wanted[:140]}-{hashlib.sha256(f'{issuer} {subject}'.encode()).hexdigest()[:8]}"


def sso_sign_in(
    *,
    issuer: str,
    subject: str,
    profile: RoleProfile,
    listed: list[RoleProfile] | None,
    claims: dict[str, Any],
    acr: str,
    level: int,
    context: AuditContext,
    via: str = "oidc",
    detail: dict[str, Any] | None = None,
) -> User:
    """The account of the chosen profile, made or updated from the claims; audited.

    Raises ProfileRefused (after a `sign-in-failed` event naming the reason and the
    profile) when the profile's organisation has no active agreement or its role
    maps to nothing. Side effects: the account and its StaffIdentity are written;
    the person's accounts for profiles not in `listed` (when given) are deactivated; one
    `sign-in` event (`via`, the profile, acr and level, and `detail`). A signed
    launch (sharedrecord/launch.py) signs its user in the same way, `via` launch.
    """
    organisation = Organisation.objects.filter(ods_code=profile.org_code).first()
    role = sso_role_for(profile.role_code)
    refusal = sso_profile_refusal(organisation=organisation, role=role)
    if refusal:
        audit_event_record(
            action=AuditAction.SIGN_IN_FAILED,
            actor=AuditActor.anonymous(_username(subject, profile)),
            outcome=AuditOutcome.DENIED,
            detail={
                "via": via,
                **(detail or {}),
                "reason": refusal,
                "role_profile": profile.person_roleid,
                "org_code": profile.org_code,
                "role_code": profile.role_code,
            },
            context=context,
        )
        raise ProfileRefused(refusal)  # the refusal's event is committed: no atomic block here
    assert organisation is not None  # sso_profile_refusal said so
    return _account_update(
        issuer=issuer, subject=subject, profile=profile, listed=listed, claims=claims,
        organisation=organisation, role=role, acr=acr, level=level, context=context,
        detail={"via": via, **(detail or {})},
    )  # fmt: skip


@transaction.atomic
def _account_update(
    *,
    issuer: str,
    subject: str,
    profile: RoleProfile,
    listed: list[RoleProfile] | None,
    claims: dict[str, Any],
    organisation: Organisation,
    role: str,
    acr: str,
    level: int,
    context: AuditContext,
    detail: dict[str, Any],
) -> User:
    identity = (
        StaffIdentity.objects.select_for_update()
        .select_related("user")
        .filter(issuer=issuer, subject=subject, role_profile_id=profile.person_roleid)
        .first()
    )
    user = (
        identity.user
        if identity
        else User(username=_free_username(_username(subject, profile), issuer, subject))
    )
    user.organisation = organisation
    user.role = role
    user.first_name = str(claims.get("given_name", ""))[:150]
    user.last_name = str(claims.get("family_name", ""))[:150]
    email = claims.get("email", "")
    user.email = email[:254] if isinstance(email, str) and "@" in email else ""
    user.is_active = True
    user.is_staff = False
    user.is_superuser = False
    user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    if identity is None:
        identity = StaffIdentity(
            user=user, issuer=issuer, subject=subject, role_profile_id=profile.person_roleid
        )
    identity.role_code = profile.role_code
    identity.last_signed_in_at = timezone.now()
    identity.full_clean(exclude=["user"])
    identity.save()
    if listed is not None:  # the provider's whole list: profiles not in it have ended
        still_listed = [p.person_roleid for p in listed]
        User.objects.filter(
            staff_identity__issuer=issuer, staff_identity__subject=subject, is_active=True
        ).exclude(staff_identity__role_profile_id__in=still_listed).update(is_active=False)
    audit_event_record(
        action=AuditAction.SIGN_IN,
        actor=actor_for(user),
        detail={
            **detail,
            "role_profile": profile.person_roleid,
            "role_code": profile.role_code,
            "acr": acr[:64],
            "assurance_level": level,
        },
        context=context,
    )
    return user
