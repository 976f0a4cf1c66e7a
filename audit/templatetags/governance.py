"""How the governance pages say why an access happened and what it showed."""

from __future__ import annotations

from django import template

from audit.directory import Names
from audit.governance import SECTION_WORDS
from audit.models import AuditAction, AuditEvent

register = template.Library()

PURPOSES = {
    "TREAT": "Direct care",
    "ETREAT": "Emergency care (break glass)",
    "HOPERAT": "Governance and operations",
}
REASONS = {
    "OVRER": "emergency treatment",
    "OVRPJ": "professional judgement",
    "OVRPS": "patient's safety",
    "OVRTPS": "third party's safety",
}
# How the viewer's organisation was linked to the person (sharedrecord.access.Relationship).
RELATIONSHIP_WORDS = {
    "registered": "registered with their practice",
    "encounter": "a recent visit or stay",
    "referral": "a referral",
    "appointment": "an appointment",
    "care-team": "in their care team",
}


@register.filter
def why(event: AuditEvent) -> str:
    """The basis given for an access, in words."""
    detail = event.detail
    if event.action == AuditAction.BREAK_GLASS:
        reason = REASONS.get(str(detail.get("reason_code", "")), "another reason")
        return f"Emergency access ({reason}): {detail.get('reason_text', '')}"
    if event.action == AuditAction.ACCESS_BASIS:
        kinds = detail.get("relationships", [])
        relationships = (
            ", ".join(
                RELATIONSHIP_WORDS.get(str(kind), str(kind).replace("-", " ")) for kind in kinds
            )
            or "none shown by the feeds"
        )
        if detail.get("self_claimed"):
            return f"Self-declared relationship: {detail.get('reason_text', '')}"
        return f"Direct care; their organisation's link: {relationships}"
    return PURPOSES.get(event.purpose, event.purpose)


@register.filter
def shown(event: AuditEvent) -> str:
    """What the access showed: the section and the number of items, never their content."""
    detail = event.detail
    parts = []
    if "section" in detail:
        section = str(detail["section"])
        parts.append(SECTION_WORDS.get(section, section.replace("-", " ")))
    if isinstance(detail.get("entries"), list):
        count = len(detail["entries"])
        parts.append(f"{count} item{'' if count == 1 else 's'}")
    if detail.get("withheld"):
        parts.append(f"{detail['withheld']} withheld")
    if isinstance(detail.get("shown"), int):
        parts.append(f"{detail['shown']} rows")
    if detail.get("asked"):
        parts.append(f"asked for {detail['asked']}")
    return ", ".join(parts)


@register.filter
def emergency(event: AuditEvent) -> bool:
    return event.action == AuditAction.BREAK_GLASS or bool(event.detail.get("break_glass"))


@register.filter
def spaced(number: str) -> str:
    return f"{number[:3]} {number[3:6]} {number[6:]}" if len(number) == 10 else number


@register.filter
def person(username: str, names: Names | None) -> str:
    """The member of staff's name (their username, the evidence, is on hover)."""
    return names.person(username) if names else username


@register.filter
def organisation(ods_code: str, names: Names | None) -> str:
    """The organisation's name (its ODS code is on hover)."""
    return names.organisation(ods_code) if names else ods_code


@register.filter
def role(code: str, names: Names | None) -> str:
    """The role's label (its code is on hover)."""
    return names.role(code) if names else code
