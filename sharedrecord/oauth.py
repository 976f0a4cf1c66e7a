"""The OAuth2 server behind the FHIR read API: only what SMART advertises, tokens that end.

django-oauth-toolkit (DOT) and oauthlib speak the protocol; this module narrows
them to what `.well-known/smart-configuration` advertises (fhirapi/capability.py) and
ties a member of staff's tokens to the consent that made them:

1. The server (SmartServer, SmartValidator): the authorization code grant for
   staff applications (PKCE with a 43-character S256 challenge and a 43-128
   character verifier; the redirect_uri named on both requests; `user/` and
   `patient/` scopes), client credentials for partner systems (`system/` and
   `patient/` scopes), and refresh with rotation. Clients authenticate with
   client_secret_basic only; access tokens count only in the Authorization
   header.
2. Consent is given by the consent page's POST, every time, in a signed-in
   session: an ApiAuthorization (member of staff, application, session).
   Exchanging its code binds it to the refresh token family; presenting the
   code again ends it (RFC 6749 section 4.1.2).
3. The chain ends for good (every token revoked; reactivating the account
   brings nothing back) when its session is signed out or replaced, the
   password changes, the account is deactivated, or API_REFRESH_TOKEN_SECONDS
   after consent, however often it was refreshed. api_tokens_revoke_for ends
   it at once; otherwise the next use finds it ended and revokes it.
4. Every OAuth event is an audit event with `detail.via = "oauth"`: consent
   given or refused, token issued, refreshed, revoked, introspected, refused.
   The actor is the member of staff where there is one, else the client
   (a partner system as its organisation's service account); never a token,
   a code or a secret. State changes are audited where they are made (the
   validator, in the request's transaction), refusals and introspection by
   the endpoints.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
from typing import Any
from urllib.parse import unquote_plus

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.compat import login_not_required
from oauth2_provider.exceptions import FatalClientError, OAuthToolkitError
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_refresh_token_model,
)
from oauth2_provider.oauth2_backends import OAuthLibCore
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.views import (
    AuthorizationView,
    IntrospectTokenView,
    RevokeTokenView,
    TokenView,
)
from oauthlib.common import Request as OAuthRequest  # type: ignore[import-untyped]
from oauthlib.oauth2.rfc6749 import errors  # type: ignore[import-untyped]
from oauthlib.oauth2.rfc6749.endpoints import (  # type: ignore[import-untyped]
    AuthorizationEndpoint,
    ResourceEndpoint,
    RevocationEndpoint,
    TokenEndpoint,
)
from oauthlib.oauth2.rfc6749.grant_types import (  # type: ignore[import-untyped]
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
)
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import (  # type: ignore[import-untyped]
    code_challenge_method_s256,
)
from oauthlib.oauth2.rfc6749.tokens import BearerToken  # type: ignore[import-untyped]

from audit.models import AuditAction, AuditOutcome
from audit.services import AuditActor, AuditContext, audit_event_record
from sharedrecord.auditing import actor_for, context_for
from sharedrecord.fhir_read import ApiCaller
from sharedrecord.models import ApiAuthorization, ApiAuthorizationEnd, User
from sharedrecord.smart import scopes_grantable

Application = get_application_model()
AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()
Grant = get_grant_model()

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


def _audit(
    event: str,
    *,
    actor: AuditActor,
    client_id: str,
    context: AuditContext,
    outcome: AuditOutcome | None = None,
    **detail: Any,
) -> None:
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


def _digest(value: str) -> str:
    """SHA-256, hex: how DOT finds a token by its checksum, and how we keep a code."""
    return hashlib.sha256(value.encode()).hexdigest()


# DOT hands the validator an oauthlib request, not Django's: SmartOAuthLibCore
# copies the audit context into it under these names (never HTTP_*, so a
# client cannot send them).
REQUEST_ID_KEY = "SHAREDRECORD_REQUEST_ID"
CLIENT_ADDRESS_KEY = "SHAREDRECORD_CLIENT_ADDRESS"


def _context(request: OAuthRequest) -> AuditContext:
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
) -> ApiAuthorization:
    """Record a member of staff's consent to an application, as its code is issued.

    Guarantees: the authorization names the signed-in session it was given
    in and a hash of the user's password state; its chain lasts at most
    API_REFRESH_TOKEN_SECONDS from now. The code itself is kept only hashed.
    Side effects: one ApiAuthorization, one audit event (consent-given).
    """
    authorization = ApiAuthorization(
        user=user,
        application=application,
        session_id=session_key,
        code_hash=_digest(code),
        auth_hash=user.get_session_auth_hash(),
        scope=" ".join(scopes),
        authorized_at=timezone.now(),
    )
    authorization.full_clean()
    authorization.save()
    _audit(
        "consent-given", actor=actor_for(user), client_id=application.client_id, context=context,
        scopes=scopes, authorization=str(authorization.public_id),
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


def _authorization_end(
    authorization: ApiAuthorization, *, reason: str, context: AuditContext
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
            _audit(
                "token-revoked", actor=actor_for(authorization.user),
                client_id=authorization.application.client_id, context=context, reason=reason,
                authorization=str(authorization.public_id),
            )  # fmt: skip
    return bool(ended)


def _chain_usable(
    *, user: User, authorization: ApiAuthorization | None, context: AuditContext
) -> bool:
    """Whether a member of staff's token may be used; if not, its whole chain ends for good.

    A staff token with no authorization (issued before they were recorded) is refused.
    """
    if authorization is None or authorization.user_id != user.pk:
        return False
    reason = _end_reason(authorization, user)
    if reason:
        _authorization_end(authorization, reason=reason, context=context)
        return False
    return True


def _authorization_of(access_token: Any) -> ApiAuthorization | None:
    """The authorization behind a member of staff's access token (one query)."""
    families = RefreshToken.objects.filter(access_token_id=access_token.pk).values("token_family")
    return ApiAuthorization.objects.filter(token_family__in=families).first()


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
    return sum(_authorization_end(one, reason=reason, context=context) for one in live)


# ------------------------------------------------------------------ the validator


def _sent_in_header(token: str, request: OAuthRequest) -> bool:
    parts = str(request.headers.get("Authorization", "")).split()
    return len(parts) == 2 and parts[0].lower() == "bearer" and parts[1] == token


class SmartValidator(OAuth2Validator):  # type: ignore[misc]
    """DOT's validator, held to the SMART configuration and to each consent's lifetime."""

    # ---- clients, response types, scopes, redirects

    def _load_application(self, client_id: str | None, request: OAuthRequest) -> Any:
        # DOT expects a NUL to raise ValueError; psycopg 3 raises DataError (a 500).
        if client_id is not None and "\x00" in client_id:
            return None
        return super()._load_application(client_id, request)

    def authenticate_client(self, request: OAuthRequest, *args: Any, **kwargs: Any) -> bool:
        """client_secret_basic only: a secret in the body is refused, even beside Basic.

        client_secret_post is not advertised, and two methods in one request
        are not allowed (RFC 6749 section 2.3).
        """
        if request.client_secret is not None:
            return False
        # DOT's base64 decoding lets a non-ASCII header escape as a ValueError (a 500).
        if not str(request.headers.get("HTTP_AUTHORIZATION", "")).isascii():
            return False
        return bool(self._authenticate_basic_auth(request))

    def validate_response_type(
        self, client_id: str, response_type: str, client: Any, request: OAuthRequest,
        *args: Any, **kwargs: Any,
    ) -> bool:  # fmt: skip
        return response_type == "code" and bool(
            super().validate_response_type(client_id, response_type, client, request)
        )

    def validate_scopes(
        self, client_id: str, scopes: list[str], client: Any, request: OAuthRequest,
        *args: Any, **kwargs: Any,
    ) -> bool:  # fmt: skip
        system = client.authorization_grant_type == Application.GRANT_CLIENT_CREDENTIALS
        return scopes_grantable(scopes, system=system) and bool(
            super().validate_scopes(client_id, scopes, client, request)
        )

    def get_default_redirect_uri(
        self, client_id: str, request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> None:
        # None: a client names its redirect_uri on both requests (SMART App Launch
        # requires it), so one left out is refused rather than filled in.
        return None

    # ---- the authorization code

    def save_authorization_code(
        self, client_id: str, code: dict[str, str], request: OAuthRequest, *args: Any,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        session_key = getattr(request, "session_key", "")
        if not session_key:  # only the consent page gives one (SmartAuthorizationView)
            raise errors.AccessDeniedError(request=request)
        super().save_authorization_code(client_id, code, request, *args, **kwargs)
        api_authorization_start(
            user=request.user, application=request.client, session_key=session_key,
            code=code["code"], scopes=list(request.scopes), context=_context(request),
        )  # fmt: skip

    def validate_code(
        self, client_id: str, code: str, client: Any, request: OAuthRequest, *args: Any,
        **kwargs: Any,
    ) -> bool:  # fmt: skip
        """The code, once, while its consent holds; a second use ends what the first issued."""
        if "\x00" in code:  # PostgreSQL cannot even compare it
            return False
        # Locked until this exchange commits (SmartTokenView's transaction), so
        # a concurrent second exchange finds it gone and counts as a reuse.
        grant = Grant.objects.select_for_update().filter(code=code, application=client).first()
        authorization = (
            ApiAuthorization.objects.filter(code_hash=_digest(code), application=client)
            .select_related("user")
            .first()
        )
        if grant is None:
            if authorization is not None and authorization.token_family is not None:
                _authorization_end(
                    authorization, reason=ApiAuthorizationEnd.CODE_REUSED, context=_context(request)
                )
            return False
        if authorization is None or not _chain_usable(
            user=authorization.user, authorization=authorization, context=_context(request)
        ):
            return False
        return bool(super().validate_code(client_id, code, client, request, *args, **kwargs))

    # ---- tokens

    def _save_bearer_token(
        self, token: dict[str, Any], request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> None:
        super()._save_bearer_token(token, request, *args, **kwargs)
        client = request.client
        scopes = str(token["scope"]).split()
        context = _context(request)
        if request.grant_type == "client_credentials":
            _audit(
                "token-issued", actor=client_actor(client), client_id=client.client_id,
                context=context, grant="client_credentials", scopes=scopes,
            )  # fmt: skip
            return
        family = (
            RefreshToken.objects.filter(
                token_checksum=_digest(token["refresh_token"]), revoked__isnull=True
            )
            .values_list("token_family", flat=True)
            .get()
        )
        if request.grant_type == "authorization_code":
            authorization = ApiAuthorization.objects.get(
                code_hash=_digest(request.code), application=client
            )
            authorization.token_family = family
            authorization.save(update_fields=["token_family"])
            event = "token-issued"
        else:
            authorization = ApiAuthorization.objects.get(token_family=family)
            event = "token-refreshed"
        _audit(
            event, actor=actor_for(request.user), client_id=client.client_id, context=context,
            grant=request.grant_type, scopes=scopes, authorization=str(authorization.public_id),
        )  # fmt: skip

    def validate_refresh_token(
        self, refresh_token: str, client: Any, request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> bool:
        if not super().validate_refresh_token(refresh_token, client, request, *args, **kwargs):
            return False
        family = request.refresh_token_instance.token_family
        authorization = ApiAuthorization.objects.filter(token_family=family).first()
        return _chain_usable(
            user=request.user, authorization=authorization, context=_context(request)
        )

    def validate_bearer_token(
        self, token: str | None, scopes: list[str], request: OAuthRequest
    ) -> bool:
        """A live token, from the Authorization header; a staff token while its consent holds."""
        if token is not None and not _sent_in_header(token, request):
            request.oauth2_error = {
                "error": "invalid_request",
                "error_description": "Send the access token in the Authorization header.",
            }
            return False
        if not super().validate_bearer_token(token, scopes, request):
            return False
        access = request.access_token
        if access.user_id is None:  # a partner system: the API checks its service account
            return True
        if _chain_usable(user=access.user, authorization=_authorization_of(access),
                         context=_context(request)):  # fmt: skip
            return True
        request.oauth2_error = {"error": "invalid_token", "error_description": "The token ended."}
        return False

    def revoke_token(
        self, token: str, token_type_hint: str | None, request: OAuthRequest, *args: Any,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        """RFC 7009, audited: a member of staff's token ends its whole authorization."""
        client = request.client
        if getattr(client, "pk", None) is None:
            return
        checksum = _digest(token)
        access = AccessToken.objects.filter(token_checksum=checksum, application=client).first()
        refresh = (
            RefreshToken.objects.filter(
                token_checksum=checksum, application=client, revoked__isnull=True
            ).first()
            if access is None
            else RefreshToken.objects.filter(access_token=access).first()
        )
        if access is None and refresh is None:
            return  # unknown, or not this client's: 200 all the same, and nothing happened
        family = refresh.token_family if refresh is not None else None
        authorization = (
            ApiAuthorization.objects.filter(token_family=family).first() if family else None
        )
        context = _context(request)
        if authorization is not None:
            _authorization_end(authorization, reason=ApiAuthorizationEnd.REVOKED, context=context)
            return
        user = access.user if access is not None else refresh.user
        super().revoke_token(token, token_type_hint, request, *args, **kwargs)
        _audit(
            "token-revoked", actor=actor_for(user) if user is not None else client_actor(client),
            client_id=client.client_id, context=context, reason=ApiAuthorizationEnd.REVOKED,
        )  # fmt: skip


# ------------------------------------------------------------------ the server

CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256, unpadded
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 section 4.1


def _challenge_checked(request: OAuthRequest) -> dict[str, str]:
    if not CHALLENGE.fullmatch(request.code_challenge or ""):
        raise errors.InvalidRequestError(
            description="code_challenge must be the S256 hash of the verifier: "
            "43 base64url characters (RFC 7636).",
            request=request,
        )
    return {}


def _verifier_checked(request: OAuthRequest) -> None:
    if not VERIFIER.fullmatch(request.code_verifier or ""):
        raise errors.InvalidRequestError(
            description="code_verifier must be 43 to 128 unreserved characters (RFC 7636).",
            request=request,
        )


class SmartAuthorizationCodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    """The code grant with S256 only: "plain", or no method (which means plain), is refused
    with the authorization request, before the consent page."""

    _code_challenge_methods = {"S256": code_challenge_method_s256}


class SmartServer(AuthorizationEndpoint, TokenEndpoint, ResourceEndpoint, RevocationEndpoint):  # type: ignore[misc]
    """oauthlib's server with only what the SMART configuration advertises.

    The code grant (response type `code` only, PKCE checked before consent
    and at the exchange), client credentials, refresh; no implicit,
    password, device or hybrid flows, and no `response_type=none`.
    """

    def __init__(
        self,
        request_validator: SmartValidator,
        token_expires_in: int | None = None,
        token_generator: Any = None,
        refresh_token_generator: Any = None,
        **kwargs: Any,  # DOT's device-flow settings: no use without the device grant
    ) -> None:
        self.auth_grant = SmartAuthorizationCodeGrant(
            request_validator, post_auth=[_challenge_checked], post_token=[_verifier_checked]
        )
        self.credentials_grant = ClientCredentialsGrant(request_validator)
        self.refresh_grant = RefreshTokenGrant(request_validator)
        self.bearer = BearerToken(
            request_validator, token_generator, token_expires_in, refresh_token_generator
        )
        AuthorizationEndpoint.__init__(
            self, default_response_type="code", response_types={"code": self.auth_grant},
            default_token_type=self.bearer,
        )  # fmt: skip
        TokenEndpoint.__init__(
            self,
            default_grant_type="authorization_code",
            grant_types={
                "authorization_code": self.auth_grant,
                "client_credentials": self.credentials_grant,
                "refresh_token": self.refresh_grant,
            },
            default_token_type=self.bearer,
        )
        ResourceEndpoint.__init__(
            self,
            default_token="Bearer",  # noqa: S106 (the token type's name)
            token_types={"Bearer": self.bearer},
        )
        RevocationEndpoint.__init__(self, request_validator)


class SmartOAuthLibCore(OAuthLibCore):  # type: ignore[misc]
    """DOT's bridge to oauthlib, carrying the request's audit context to the validator."""

    def extract_headers(self, request: HttpRequest) -> dict[str, Any]:
        headers: dict[str, Any] = super().extract_headers(request)
        context = context_for(request)
        headers[REQUEST_ID_KEY] = context.request_id
        headers[CLIENT_ADDRESS_KEY] = context.client_address or ""
        return headers


# ------------------------------------------------------------------ the endpoints


def _claimed_client(request: HttpRequest) -> tuple[str, Any]:
    """The client a request names (Basic, else `client_id`), and its Application if it exists.

    Nothing is authenticated here: this only names who a refusal is about.
    """
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    client_id = ""
    if scheme.lower() == "basic":
        try:
            client_id = unquote_plus(base64.b64decode(value.strip()).decode().split(":", 1)[0])
        except ValueError:  # bad base64 or not UTF-8
            client_id = ""
    client_id = (client_id or request.POST.get("client_id", ""))[:100]
    if not client_id.isprintable():  # PostgreSQL refuses NUL, in a query and in the trail
        return "", None
    return client_id, Application.objects.filter(client_id=client_id).first() if client_id else None


def _refused(request: HttpRequest, error: str) -> None:
    client_id, application = _claimed_client(request)
    actor = client_actor(application) if application is not None else AuditActor.anonymous()
    grant = request.POST.get("grant_type", "")[:60]
    _audit(
        "refused", actor=actor, client_id=client_id, context=context_for(request),
        error=error[:60], grant=grant if grant.isprintable() else "",
    )  # fmt: skip


def _error_of(response: HttpResponse) -> str:
    try:
        return str(json.loads(response.content).get("error", ""))
    except (ValueError, AttributeError):
        return ""


class SmartAuthorizationView(AuthorizationView):  # type: ignore[misc]
    """The consent page: asked every time, given only by its form's POST, audited either way."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # DOT skips the page for approval_prompt=auto when a live token has the
        # same scopes: consent is asked every time instead.
        if "approval_prompt" in request.GET:
            query = request.GET.copy()
            del query["approval_prompt"]
            request.GET = query  # type: ignore[assignment]
        response: HttpResponse = super().get(request, *args, **kwargs)
        return response

    def form_valid(self, form: Any) -> HttpResponse:
        # DOT looks the form's client up with .get(): a client_id edited in the
        # hidden field would be a 500. It is refused like an unknown client.
        client_id = str(form.cleaned_data["client_id"])
        if "\x00" in client_id or not Application.objects.filter(client_id=client_id).exists():
            unknown = FatalClientError(error=errors.InvalidClientIdError())
            return self.error_response(unknown, None)
        response: HttpResponse = super().form_valid(form)
        return response

    def create_authorization_response(
        self, request: HttpRequest, scopes: str, credentials: dict[str, Any], allow: bool
    ) -> tuple[str, dict[str, str], str, int]:
        if request.method != "POST":
            # Neither approval_prompt=auto nor an application's skip_authorization
            # gives consent: only the member of staff's Allow does.
            raise OAuthToolkitError(
                error=errors.AccessDeniedError(state=credentials.get("state")),
                redirect_uri=credentials.get("redirect_uri"),
            )
        credentials["session_key"] = request.session.session_key or ""
        with transaction.atomic():
            answer: tuple[str, dict[str, str], str, int] = super().create_authorization_response(
                request, scopes, credentials, allow
            )
        return answer

    def error_response(self, error: Any, application: Any, **kwargs: Any) -> HttpResponse:
        request = self.request
        code = str(error.oauthlib_error.error)
        declined = request.method == "POST" and not request.POST.get("allow")
        user = request.user
        actor = actor_for(user) if isinstance(user, User) else AuditActor.anonymous()
        if application is not None:
            client_id = application.client_id
        else:
            client_id = str(request.POST.get("client_id") or request.GET.get("client_id", ""))
            client_id = client_id[:100] if client_id.isprintable() else ""
        with transaction.atomic():
            if declined and code == "access_denied":
                _audit("consent-refused", actor=actor, client_id=client_id,
                       context=context_for(request))  # fmt: skip
            else:
                _audit("refused", actor=actor, client_id=client_id, context=context_for(request),
                       error=code[:60])  # fmt: skip
        response: HttpResponse = super().error_response(error, application, **kwargs)
        return response


class SmartTokenView(TokenView):  # type: ignore[misc]
    """The token endpoint: one transaction a request, every refusal audited."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Not DOT's post(): it sends the device grant to a handler that needs a
        # device_code (a 500 without one). This server has no device flow, so
        # every grant type goes to oauthlib, which refuses what it does not know.
        with transaction.atomic():
            response: HttpResponse = self.authorization_flow_token_response(request)
            if response.status_code != 200:
                _refused(request, _error_of(response))
        return response


class SmartRevokeTokenView(RevokeTokenView):  # type: ignore[misc]
    """RFC 7009 revocation in one transaction; a refused request is audited."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with transaction.atomic():
            response: HttpResponse = super().post(request, *args, **kwargs)
            if response.status_code != 200:
                _refused(request, _error_of(response))
        return response


def _authenticated_client(request: HttpRequest) -> Any:
    """The client, if it authenticated with client_secret_basic (as at the token endpoint)."""
    oauth_request = OAuthRequest(
        request.build_absolute_uri(),
        http_method=request.method or "POST",
        body=request.POST.urlencode(),
        # DOT reads Basic credentials from the WSGI name, as its core passes META on.
        headers={"HTTP_AUTHORIZATION": request.META.get("HTTP_AUTHORIZATION", "")},
    )
    if SmartValidator().authenticate_client(oauth_request):
        return oauth_request.client
    return None


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class SmartIntrospectTokenView(IntrospectTokenView):  # type: ignore[misc]
    """RFC 7662 for the token's own client or a registered resource server.

    A client authenticates with client_secret_basic; an access token in its
    place (DOT's "introspection" scope) is not accepted. Another client's
    token, like an unknown or ended one, is `{"active": false}`. Resource
    servers are the clients named in API_RESOURCE_SERVERS. POST only: a
    token in a query string would be written to logs.
    """

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        client = _authenticated_client(request)
        if client is None:
            with transaction.atomic():
                _refused(request, "invalid_client")
            refused = JsonResponse({"error": "invalid_client"}, status=401)
            refused["WWW-Authenticate"] = 'Basic realm="oauth"'
            return refused
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        with transaction.atomic():
            return self.introspect(request, client)

    def introspect(self, request: HttpRequest, client: Any) -> JsonResponse:
        value = request.POST.get("token", "")
        if not value:
            return JsonResponse(
                {"error": "invalid_request", "error_description": "Send the token to look at."},
                status=400,
            )
        access = (
            AccessToken.objects.select_related("user", "application")
            .filter(token_checksum=_digest(value))
            .first()
        )
        permitted = access is not None and (
            access.application_id == client.pk or client.client_id in settings.API_RESOURCE_SERVERS
        )
        context = context_for(request)
        active = permitted and access.is_valid() and self.usable(access, context)
        whose: dict[str, Any] = (
            {"token_client_id": access.application.client_id} if permitted else {}
        )
        _audit(
            "token-introspected", actor=client_actor(client), client_id=client.client_id,
            context=context, outcome=AuditOutcome.SUCCESS if permitted else AuditOutcome.DENIED,
            active=active, **whose,
        )  # fmt: skip
        if not active:
            return JsonResponse({"active": False})
        answer: dict[str, Any] = {
            "active": True,
            "scope": access.scope,
            "exp": int(access.expires.timestamp()),
            "client_id": access.application.client_id,
            "token_type": "Bearer",
        }
        if access.user is not None:
            answer["username"] = access.user.get_username()
        return JsonResponse(answer)

    @staticmethod
    def usable(access: Any, context: AuditContext) -> bool:
        if access.user_id is None:  # a partner system reads as its service account
            account = access.application.user
            return account is not None and bool(account.is_active)
        return _chain_usable(user=access.user, authorization=_authorization_of(access),
                             context=context)  # fmt: skip
