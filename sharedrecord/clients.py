"""Registering applications with the FHIR read API (django-oauth-toolkit).

A partner system gets a service account of its organisation; a staff-facing
application gets a client whose tokens carry the signed-in member of staff.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth.hashers import check_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from audit.models import AuditAction
from audit.trail import AuditActor, audit_event_record
from sharedrecord.access import role_may_read_records
from sharedrecord.models import (
    Organisation,
    StaffRole,
    User,
)
from sharedrecord.organisations import staff_user_upsert


@dataclass(frozen=True)
class ApiClientIssued:
    client_id: str
    client_secret: str  # shown once: only its hash is kept
    service_account: User | None


GRANTS = ("client-credentials", "authorization-code")


@transaction.atomic
def api_client_register(
    *,
    name: str,
    grant: str,
    organisation: Organisation | None = None,
    role: str = "",
    redirect_uris: str = "",
    client_id: str = "",
    client_secret: str = "",
) -> ApiClientIssued:
    """Register an application with the FHIR read API (django-oauth-toolkit); print-once secret.

    - client-credentials: a partner system. It reads as a service account of
      `organisation` with `role` (a clinical or care role) and no usable
      password, so the access policy treats it as that organisation's staff.
    - authorization-code: a staff-facing application; each token carries
      the signed-in member of staff, whose own role and organisation apply.
      It needs exact redirect URIs, and PKCE (settings).
    Given a client_id that exists, it updates that client (and its secret,
    if one is given): re-running the demo seed changes nothing.
    Side effects: one audit event (admin-change).
    """
    from oauth2_provider.models import get_application_model

    application_model = get_application_model()
    if grant not in GRANTS:
        raise ValidationError({"grant": f"Choose one of {', '.join(GRANTS)}."})
    secret = client_secret or secrets.token_urlsafe(32)
    application = (
        application_model.objects.filter(client_id=client_id).first() if client_id else None
    )
    created = application is None
    if application is None:
        application = application_model(client_id=client_id) if client_id else application_model()
    account = None
    if grant == "client-credentials":
        if organisation is None or not role_may_read_records(role):
            raise ValidationError(
                {"role": "A partner system needs an organisation and a clinical or care role."}
            )
        username = f"api.{organisation.ods_code.lower()}.{slugify(name)}"[:150]
        account = staff_user_upsert(
            username=username, organisation=organisation, role=StaffRole(role),
            first_name="API", last_name=name[:150], password=None,
        )  # fmt: skip
        application.authorization_grant_type = application_model.GRANT_CLIENT_CREDENTIALS
        application.redirect_uris = ""
    else:
        if not redirect_uris.strip():
            raise ValidationError({"redirect_uris": "Give the application's redirect URIs."})
        application.authorization_grant_type = application_model.GRANT_AUTHORIZATION_CODE
        application.redirect_uris = redirect_uris.strip()
    application.name = name
    application.user = account
    application.client_type = application_model.CLIENT_CONFIDENTIAL
    application.skip_authorization = False
    # A given secret that already matches is left alone (its stored hash would change).
    reset = created or (client_secret and not check_password(secret, application.client_secret))
    if reset:
        application.client_secret = secret
    application.full_clean()
    application.save()
    audit_event_record(
        action=AuditAction.ADMIN_CHANGE,
        actor=AuditActor.system("manage.py"),
        detail={
            "model": "oauth2_provider.Application",
            "object": application.client_id,
            "change": "registered" if created else "updated",
            "secret_reset": bool(reset),
            "grant": grant,
        },
        source_ods=[organisation.ods_code] if organisation else [],
    )
    return ApiClientIssued(
        application.client_id, secret if created or client_secret else "", account
    )
