"""Role profiles from a provider's claims, in NHS CIS2's shape (pure: no Django, no network).

With the `nationalrbacaccess` scope CIS2 sends `nhsid_nrbac_roles`, one entry per
role profile (`person_roleid`, `org_code`, `role_code`, `role_name`, `activity_codes`);
with `selectedrole` it asks the user to pick one and sends `selected_roleid`.
Entries without a profile id or organisation are dropped: nothing is guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROLES_CLAIM = "nhsid_nrbac_roles"
SELECTED_CLAIM = "selected_roleid"
MAX_PROFILES = 50


@dataclass(frozen=True)
class RoleProfile:
    """One role profile: a job role at one organisation."""

    person_roleid: str
    org_code: str
    role_code: str
    role_name: str = ""
    activity_codes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "person_roleid": self.person_roleid,
            "org_code": self.org_code,
            "role_code": self.role_code,
            "role_name": self.role_name,
            "activity_codes": list(self.activity_codes),
        }


def _text(value: object, limit: int) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def role_profile_from(entry: object) -> RoleProfile | None:
    """One claim entry as a profile, or None when it lacks what a profile needs."""
    if not isinstance(entry, Mapping):
        return None
    person_roleid = _text(entry.get("person_roleid"), 100)
    org_code = _text(entry.get("org_code"), 12).upper()
    if not person_roleid or not org_code:
        return None
    codes = entry.get("activity_codes")
    activity_codes = tuple(
        str(code)[:20] for code in (codes if isinstance(codes, list) else []) if str(code)
    )[:200]
    return RoleProfile(
        person_roleid=person_roleid,
        org_code=org_code,
        role_code=_text(entry.get("role_code"), 100),
        role_name=_text(entry.get("role_name"), 200),
        activity_codes=activity_codes,
    )


def role_profiles_from(claims: Mapping[str, Any]) -> list[RoleProfile]:
    """Every well-formed profile in the claims, in the provider's order, each id once."""
    entries = claims.get(ROLES_CLAIM)
    if not isinstance(entries, list):
        return []
    profiles: list[RoleProfile] = []
    seen: set[str] = set()
    for entry in entries[:MAX_PROFILES]:
        profile = role_profile_from(entry)
        if profile is not None and profile.person_roleid not in seen:
            seen.add(profile.person_roleid)
            profiles.append(profile)
    return profiles


def role_profile_selected(
    profiles: list[RoleProfile], claims: Mapping[str, Any]
) -> RoleProfile | None:
    """The profile the provider selected (`selected_roleid`), when it is one of the user's."""
    selected = _text(claims.get(SELECTED_CLAIM), 100)
    return next((p for p in profiles if selected and p.person_roleid == selected), None)
