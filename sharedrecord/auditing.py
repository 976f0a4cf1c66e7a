"""Build the audit trail's actor from our users, and say who may read the trail.

The audit app imports none of ours, so callers translate here and then call
audit.trail.audit_event_record themselves, inside their own transaction.
The request context (request id, client address) is audit.context's.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from audit.context import client_address, context_for
from audit.governance import GovernanceViewer
from audit.models import ActorType
from audit.selectors import GovernanceScope
from audit.trail import AuditActor
from sharedrecord.models import StaffRole, User

__all__ = ["actor_for", "client_address", "context_for", "governance_viewer_for"]


def actor_for(user: User) -> AuditActor:
    """The audit actor for a member of staff, with their role and organisation as of now."""
    return AuditActor(
        type=ActorType.USER,
        name=user.get_username(),
        id=user.public_id,
        role=user.role,
        role_code=user.rbac_code,
        org_ods=user.organisation.ods_code if user.organisation else "",
    )


def governance_viewer_for(user: Any) -> GovernanceViewer | None:
    """Who may read the audit trail, and how much (registered with the audit app).

    Only privacy officers. Those of an organisation in GOVERNANCE_ODS_CODES
    (the programme that runs the record) see the whole trail. Every other
    privacy officer holds two views of their organisation: the record-holder
    view (the default) and its staff's accesses to anyone. No superuser or
    staff shortcut.
    """
    if not isinstance(user, User) or not user.is_authenticated:
        return None
    if user.role != StaffRole.PRIVACY_OFFICER or user.organisation is None:
        return None
    ods = user.organisation.ods_code
    if ods in settings.GOVERNANCE_ODS_CODES:
        held: tuple[GovernanceScope, ...] = (GovernanceScope(),)
    else:
        held = (GovernanceScope(holder_ods=ods), GovernanceScope(staff_ods=ods))
    return GovernanceViewer(user=user, actor=actor_for(user), scope=held[0], held=held)
