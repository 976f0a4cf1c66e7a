"""Configuring an organisation's pull source: its FHIR endpoint, how we sign in, what we ask."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from audit.models import AuditAction
from audit.trail import AuditActor, audit_event_record
from sharedrecord.models import Organisation, PullAuth, PullMode, PullSearch, PullSource


@transaction.atomic
def pull_source_register(
    *,
    organisation: Organisation,
    base_url: str,
    token_url: str,
    client_id: str,
    secret_name: str,
    auth: str = PullAuth.CLIENT_SECRET,
    key_id: str = "",
    scope: str = "system/*.read",
    search: str = PullSearch.EVERYTHING,
    resource_types: list[str] | None = None,
    timeout_seconds: Decimal | float = Decimal(3),
    mode: str = PullMode.BOTH,
    active: bool = True,
    actor: AuditActor | None = None,
) -> PullSource:
    """Create or update the organisation's one pull source (idempotent); audited.

    The secret itself is not stored: `secret_name` names the environment
    variable (or NAME_FILE) the deployment puts it in. Raises ValidationError
    for a value the model refuses (a URL, the secret's name, the timeout).
    Side effects: one audit event (admin-change) when something changed.
    """
    source = PullSource.objects.filter(organisation=organisation).first()
    created = source is None
    if source is None:
        source = PullSource(organisation=organisation)
    values = {
        "base_url": base_url.rstrip("/"),
        "token_url": token_url,
        "client_id": client_id,
        "secret_name": secret_name,
        "auth": auth,
        "key_id": key_id,
        "scope": scope,
        "search": search,
        "resource_types": list(resource_types)
        if resource_types is not None
        else list(source.resource_types),
        "timeout_seconds": Decimal(str(timeout_seconds)),
        "mode": mode,
        "active": active,
    }
    changed = [name for name, value in values.items() if getattr(source, name) != value]
    for name, value in values.items():
        setattr(source, name, value)
    source.full_clean()
    if created or changed:
        source.save()
        audit_event_record(
            action=AuditAction.ADMIN_CHANGE,
            actor=actor or AuditActor.system("manage.py"),
            detail={
                "model": "sharedrecord.PullSource",
                "object": str(source.public_id),
                "change": "registered" if created else "updated",
                "fields": sorted(changed),
            },
            source_ods=[organisation.ods_code],
        )
    return source
