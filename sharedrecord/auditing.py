"""Build the audit trail's actor from our users.

The audit app imports none of ours, so callers translate here and then call
audit.trail.audit_event_record themselves, inside their own transaction.
The request context (request id, client address) comes from audit.context.
"""

from __future__ import annotations

from audit.models import ActorType
from audit.trail import AuditActor
from sharedrecord.models import User


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
