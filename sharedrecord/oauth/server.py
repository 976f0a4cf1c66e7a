"""The OAuth2 validator and server DOT is given: only what the SMART configuration advertises.

See the package docstring for the rules (point 1).
"""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_refresh_token_model,
)
from oauth2_provider.oauth2_backends import OAuthLibCore
from oauth2_provider.oauth2_validators import OAuth2Validator
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

from audit.context import context_for
from sharedrecord.auditing import actor_for
from sharedrecord.exceptions import PatientNotFound
from sharedrecord.models import ApiAuthorization, ApiAuthorizationEnd, Patient
from sharedrecord.oauth.consent import (
    CLIENT_ADDRESS_KEY,
    REQUEST_ID_KEY,
    api_authorization_start,
    authorization_chain_usable,
    authorization_end,
    authorization_of_token,
    client_actor,
    oauth_event_audit,
    oauth_request_context,
    token_digest,
)
from sharedrecord.smart import scopes_grantable

Application = get_application_model()
AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()
Grant = get_grant_model()

# ------------------------------------------------------------------ the validator


def _sent_in_header(token: str, request: OAuthRequest) -> bool:
    parts = str(request.headers.get("Authorization", "")).split()
    return len(parts) == 2 and parts[0].lower() == "bearer" and parts[1] == token


class SmartValidator(OAuth2Validator):  # type: ignore[misc]
    """DOT's validator, held to the SMART configuration and to each consent's lifetime."""

    # ---- tokens

    def _load_access_token(self, token: str) -> Any:
        # DOT's, in one query rather than three: the token with its application and
        # user, and the accounts and organisations every API read asks for next (a
        # partner system reads as its application's account). Read fresh on every
        # request, so a revoked or expired token fails at once (nothing is kept).
        return (
            AccessToken.objects.select_related(
                "application__user__organisation", "user__organisation"
            )
            .filter(token_checksum=token_digest(token))
            .first()
        )

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
        try:
            self._authorization_start(code, request)
        except PatientNotFound as exc:  # the person in context is no longer findable
            raise errors.InvalidRequestError(
                description="The person in context cannot be opened.", request=request
            ) from exc

    def _authorization_start(self, code: dict[str, str], request: OAuthRequest) -> None:
        session_key = getattr(request, "session_key", "")
        api_authorization_start(
            user=request.user, application=request.client, session_key=session_key,
            code=code["code"], scopes=list(request.scopes), context=oauth_request_context(request),
            patient_public_id=getattr(request, "launch_patient", ""),
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
            ApiAuthorization.objects.filter(code_hash=token_digest(code), application=client)
            .select_related("user")
            .first()
        )
        if grant is None:
            if authorization is not None and authorization.token_family is not None:
                authorization_end(
                    authorization=authorization,
                    reason=ApiAuthorizationEnd.CODE_REUSED,
                    context=oauth_request_context(request),
                )
            return False
        if authorization is None or not authorization_chain_usable(
            user=authorization.user,
            authorization=authorization,
            context=oauth_request_context(request),
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
        context = oauth_request_context(request)
        if request.grant_type == "client_credentials":
            oauth_event_audit(
                event="token-issued", actor=client_actor(client), client_id=client.client_id,
                context=context, grant="client_credentials", scopes=scopes,
            )  # fmt: skip
            return
        family = (
            RefreshToken.objects.filter(
                token_checksum=token_digest(token["refresh_token"]), revoked__isnull=True
            )
            .values_list("token_family", flat=True)
            .get()
        )
        if request.grant_type == "authorization_code":
            authorization = ApiAuthorization.objects.get(
                code_hash=token_digest(request.code), application=client
            )
            authorization.token_family = family
            authorization.save(update_fields=["token_family"])
            event = "token-issued"
        else:
            authorization = ApiAuthorization.objects.get(token_family=family)
            event = "token-refreshed"
        if authorization.patient_id is not None:
            # The EHR launch context, in the token response (SMART App Launch).
            token["patient"] = str(
                Patient.objects.values_list("public_id", flat=True).get(pk=authorization.patient_id)
            )
        oauth_event_audit(
            event=event, actor=actor_for(request.user), client_id=client.client_id, context=context,
            grant=request.grant_type, scopes=scopes, authorization=str(authorization.public_id),
        )  # fmt: skip

    def validate_refresh_token(
        self, refresh_token: str, client: Any, request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> bool:
        if not super().validate_refresh_token(refresh_token, client, request, *args, **kwargs):
            return False
        family = request.refresh_token_instance.token_family
        authorization = ApiAuthorization.objects.filter(token_family=family).first()
        return authorization_chain_usable(
            user=request.user, authorization=authorization, context=oauth_request_context(request)
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
        authorization = authorization_of_token(access)
        context = oauth_request_context(request)
        if authorization_chain_usable(user=access.user, authorization=authorization,
                                      context=context):  # fmt: skip
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
        checksum = token_digest(token)
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
        context = oauth_request_context(request)
        if authorization is not None:
            authorization_end(
                authorization=authorization, reason=ApiAuthorizationEnd.REVOKED, context=context
            )
            return
        user = access.user if access is not None else refresh.user
        super().revoke_token(token, token_type_hint, request, *args, **kwargs)
        oauth_event_audit(
            event="token-revoked",
            actor=actor_for(user) if user is not None else client_actor(client),
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
