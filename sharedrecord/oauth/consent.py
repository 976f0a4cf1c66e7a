"""Consents to applications and the token chains they start, each OAuth event audited.

See the package docstring for the rules (points 2 to 4).
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from oauth2_provider.models import get_refresh_token_model
from oauthlib.common import Request as OAuthRequest  # type: ignore[import-untyped]

from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditActor, AuditContext, audit_event_record
from sharedrecord.access import patient_get_for_viewer
from sharedrecord.auditing import actor_for
from sharedrecord.fhir_read import ApiCaller
from sharedrecord.models import ApiAuthorization, ApiAuthorizationEnd, Patient, User

RefreshToken = get_refresh_token_model()

# ------------------------------------------------------------------ the audit trail

# How each OAuth event is written. The trail has no OAuth actions of its own,
# so these are its sign-ins and sign-outs (Login and Logout in the FHIR
# AuditEvent export), told apart by `detail.event`.
EVENTS: dict[str, tuple[AuditAction, AuditOutcome]] = {
    "consent-given": (AuditAction.SIGN_IN, AuditOutcome.SUCCESS),
    "consent-refused": (AuditAction.SIGN_IN_FAILED, AuditOutcome.DENIED),
    "token-issued": (AuditAction.SIGN_IN, AuditOutcome.SUCCESS),
    "token-refreshed": (AuditAction.SIGN_IN, AuditOutcome.SUCCESS),
    "token-introspected": (AuditAction.SIGN_IN, AuditOutcome.SUCCESS),
    "token-revoked": (AuditAction.SIGN_OUT, AuditOutcome.SUCCESS),
    "refused": (AuditAction.SIGN_IN_FAILED, AuditOutcome.DENIED),
}


def oauth_event_audit(
    *,
    event: str,
    actor: AuditActor,
    client_id: str,
    context: AuditContext,
    outcome: AuditOutcome | None = None,
    **detail: Any,
) -> None:
    """Write one OAuth event to the trail, in the caller's transaction (`detail.via` "oauth")."""
    action, usual = EVENTS[event]
    audit_event_record(
        action=action,
        actor=actor,
        outcome=outcome or usual,
        detail={"via": "oauth", "event": event, "client_id": client_id, **detail},
        context=context,
    )


def client_actor(application: Any) -> AuditActor:
    """A client as the trail names it: a partner system as its service account, else itself."""
    account = application.user
    if account is None:
        return AuditActor.system(f"api:{application.name}"[:150])
    caller = ApiCaller(
        user=account, client_id=application.client_id, client_name=application.name,
        system=True, types=frozenset(),
    )  # fmt: skip
    return caller.actor()


def token_digest(value: str) -> str:
    """SHA-256, hex: how DOT finds a token by its checksum, and how we keep a code."""
    return hashlib.sha256(value.encode()).hexdigest()


# DOT hands the validator an oauthlib request, not Django's: SmartOAuthLibCore
# copies the audit context into it under these names (never HTTP_*, so a
# client cannot send them).
REQUEST_ID_KEY = "SHAREDRECORD_REQUEST_ID"
CLIENT_ADDRESS_KEY = "SHAREDRECORD_CLIENT_ADDRESS"


def oauth_request_context(request: OAuthRequest) -> AuditContext:
    """The audit context SmartOAuthLibCore copied into an oauthlib request."""
    headers = request.headers
    return AuditContext(
        request_id=str(headers.get(REQUEST_ID_KEY, "")),
        client_address=str(headers.get(CLIENT_ADDRESS_KEY, "")) or None,
    )


# ------------------------------------------------------------------ services


def _lifetime() -> datetime.timedelta:
    return datetime.timedelta(seconds=int(settings.OAUTH2_PROVIDER["REFRESH_TOKEN_EXPIRE_SECONDS"]))


@transaction.atomic
def api_authorization_start(
    *,
    user: User,
    application: Any,
    session_key: str,
    code: str,
    scopes: list[str],
    context: AuditContext,
    patient_public_id: str = "",
) -> ApiAuthorization:
    """Record a member of staff's consent to an application, as its code is issued.

    Guarantees: the authorization names the signed-in session it was given
    in and a hash of the user's password state; its chain lasts at most
    API_REFRESH_TOKEN_SECONDS from now. The code itself is kept only hashed. With
    `patient_public_id` (EHR launch context) its tokens carry that person, and only
    a person the user may find can be that person.
    Side effects: one ApiAuthorization, one audit event (consent-given).
    """
    patient = None
    if patient_public_id:
        patient = patient_get_for_viewer(viewer=user, patient_id=patient_public_id)
    authorization = ApiAuthorization(
        user=user,
        application=application,
        session_id=session_key,
        code_hash=token_digest(code),
        auth_hash=user.get_session_auth_hash(),
        scope=" ".join(scopes),
        authorized_at=timezone.now(),
        patient=patient,
    )
    authorization.full_clean()
    authorization.save()
    oauth_event_audit(
        event="consent-given", actor=actor_for(user), client_id=application.client_id,
        context=context, scopes=scopes, authorization=str(authorization.public_id),
        patient=str(patient.public_id) if patient else "",
    )  # fmt: skip
    return authorization


def _end_reason(authorization: ApiAuthorization, user: User) -> str:
    """Why no token of this authorization may be used any more; "" while they may."""
    if authorization.ended_at is not None:
        return authorization.end_reason
    if not user.is_active:
        return ApiAuthorizationEnd.DEACTIVATED
    if authorization.session_id is None:
        return ApiAuthorizationEnd.SESSION_ENDED
    if not constant_time_compare(authorization.auth_hash, user.get_session_auth_hash()):
        return ApiAuthorizationEnd.PASSWORD_CHANGED
    if timezone.now() >= authorization.authorized_at + _lifetime():
        return ApiAuthorizationEnd.EXPIRED
    return ""


def authorization_end(
    *, authorization: ApiAuthorization, reason: str, context: AuditContext
) -> bool:
    """End an authorization and revoke every token of its chain; False if it had ended already.

    Side effects: the family's refresh tokens revoked and access tokens
    deleted; one audit event (token-revoked), the first time only.
    """
    with transaction.atomic():
        ended = ApiAuthorization.objects.filter(pk=authorization.pk, ended_at__isnull=True).update(
            ended_at=timezone.now(), end_reason=reason
        )
        # Even when it had ended: a token a racing refresh minted meanwhile goes too.
        RefreshToken.revoke_family(authorization.token_family)
        if ended:
            oauth_event_audit(
                event="token-revoked", actor=actor_for(authorization.user),
                client_id=authorization.application.client_id, context=context, reason=reason,
                authorization=str(authorization.public_id),
            )  # fmt: skip
    return bool(ended)


def authorization_chain_usable(
    *, user: User, authorization: ApiAuthorization | None, context: AuditContext
) -> bool:
    """Whether a member of staff's token may be used; if not, its whole chain ends for good.

    A staff token with no authorization (issued before they were recorded) is refused.
    """
    if authorization is None or authorization.user_id != user.pk:
        return False
    reason = _end_reason(authorization, user)
    if reason:
        authorization_end(authorization=authorization, reason=reason, context=context)
        return False
    return True


def authorization_of_token(access_token: Any) -> ApiAuthorization | None:
    """The authorization behind a member of staff's access token (one query)."""
    families = RefreshToken.objects.filter(access_token_id=access_token.pk).values("token_family")
    return ApiAuthorization.objects.filter(token_family__in=families).first()


def authorization_patient(authorization: ApiAuthorization) -> str:
    """The public id of the person in an authorization's launch context ("" when none)."""
    if authorization.patient_id is None:
        return ""
    found = Patient.objects.filter(pk=authorization.patient_id).values_list("public_id", flat=True)
    return str(found.first() or "")


def api_tokens_revoke_for(
    *, user: User, reason: str, session_key: str = "", context: AuditContext | None = None
) -> int:
    """End a member of staff's authorizations of applications and revoke every token of them.

    All of them, or with `session_key` only those given in that session
    (signing out ends what that session authorized, not another's). Returns
    how many it ended: running it twice ends nothing more. Nothing it ended
    comes back, even if the account is reactivated.
    Side effects: per authorization ended, its tokens revoked and one audit
    event (token-revoked, with the reason).
    """
    if reason not in ApiAuthorizationEnd.values:
        raise ValidationError({"reason": f"Choose one of {', '.join(ApiAuthorizationEnd.values)}."})
    live = ApiAuthorization.objects.filter(user=user, ended_at__isnull=True)
    if session_key:
        live = live.filter(session_id=session_key)
    context = context or AuditContext()
    return sum(authorization_end(authorization=one, reason=reason, context=context) for one in live)
