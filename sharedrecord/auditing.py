"""Build the audit trail's actor and context from our users and requests.

The audit app imports none of ours, so callers translate here and then call
audit.services.audit_event_record themselves, inside their own transaction.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

from audit.models import ActorType
from audit.services import AuditActor, AuditContext
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


def client_address(request: HttpRequest) -> str | None:
    """The client's address, for the audit trail and the sign-in lockout.

    The connection's address, or, with TRUST_X_FORWARDED_FOR, the last hop
    our TLS terminator added to X-Forwarded-For (earlier entries are whatever
    the client claimed, so they are never used).
    """
    forwarded: str = request.META.get("HTTP_X_FORWARDED_FOR", "")
    address: str
    if settings.TRUST_X_FORWARDED_FOR and forwarded:
        address = forwarded.split(",")[-1].strip()
    else:
        address = str(request.META.get("REMOTE_ADDR", "")).strip()
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return None
    return address


def context_for(request: HttpRequest) -> AuditContext:
    """The request id and client address."""
    return AuditContext(
        request_id=getattr(request, "request_id", ""), client_address=client_address(request)
    )
