"""The audit context of an HTTP request: its request id and the client's address."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

from audit.trail import AuditContext


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
