"""The OpenID provider as our client sees it: discovery, keys, the code flow, ID token checks.

The OAuth client is authlib's (PKCE S256, client secret or private_key_jwt); the JOSE
work is joserfc's. Nothing here signs, verifies or parses a JWT by hand.
Discovery and the provider's keys are kept in Django's cache for OIDC_CACHE_SECONDS;
a token signed with a key id the cached set lacks fetches the keys once more (rotation).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from django.conf import settings
from django.core.cache import cache
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

ID_TOKEN_ALGORITHMS = ["RS256", "PS256", "ES256"]


class SsoError(Exception):
    """A sign-in that cannot go on; `code` names why (never a token or a claim's value)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class ProviderConfig:
    """One OpenID provider and our registration with it."""

    issuer: str
    client_id: str
    client_secret: str = ""
    private_key_pem: str = ""
    key_id: str = ""
    scopes: str = "openid"
    acr_values: str = ""
    cache_seconds: int = 3600
    timeout_seconds: int = 5
    leeway_seconds: int = 60

    @property
    def cache_key(self) -> str:
        return "oidc:" + hashlib.sha256(self.issuer.encode()).hexdigest()[:32]


def provider_config() -> ProviderConfig | None:
    """The configured provider (settings.OIDC_*), or None when single sign-on is off."""
    if not settings.OIDC_ISSUER:
        return None
    key_file = settings.OIDC_CLIENT_PRIVATE_KEY_FILE
    return ProviderConfig(
        issuer=settings.OIDC_ISSUER,
        client_id=settings.OIDC_CLIENT_ID,
        client_secret=settings.OIDC_CLIENT_SECRET,
        private_key_pem=Path(key_file).read_text(encoding="utf-8") if key_file else "",
        key_id=settings.OIDC_CLIENT_KEY_ID,
        scopes=settings.OIDC_SCOPES,
        acr_values=settings.OIDC_ACR_VALUES,
        cache_seconds=settings.OIDC_CACHE_SECONDS,
        timeout_seconds=settings.OIDC_TIMEOUT_SECONDS,
        leeway_seconds=settings.OIDC_LEEWAY_SECONDS,
    )


def _get_json(url: str, *, timeout: int, headers: Mapping[str, str] | None = None) -> Any:
    try:
        answer = requests.get(url, timeout=timeout, headers=dict(headers or {}))
        answer.raise_for_status()
        return answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise SsoError("provider-unreachable") from exc


def provider_metadata(config: ProviderConfig) -> dict[str, Any]:
    """The provider's discovery document (cached); its `issuer` must be the one configured."""
    key = config.cache_key + ":metadata"
    metadata = cache.get(key)
    if metadata is None:
        url = config.issuer + "/.well-known/openid-configuration"
        metadata = _get_json(url, timeout=config.timeout_seconds)
        if not isinstance(metadata, dict) or metadata.get("issuer") != config.issuer:
            raise SsoError("provider-metadata")
        cache.set(key, metadata, config.cache_seconds)
    return cast(dict[str, Any], metadata)


def provider_keys(config: ProviderConfig, *, refresh: bool = False) -> KeySet:
    """The provider's signing keys (its jwks_uri), cached; `refresh` fetches them again."""
    key = config.cache_key + ":jwks"
    jwks = None if refresh else cache.get(key)
    if jwks is None:
        jwks = _get_json(provider_metadata(config)["jwks_uri"], timeout=config.timeout_seconds)
        cache.set(key, jwks, config.cache_seconds)
    try:
        return KeySet.import_key_set(jwks)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SsoError("provider-keys") from exc


def _session(config: ProviderConfig, redirect_uri: str) -> OAuth2Session:
    if config.private_key_pem:
        token_endpoint = provider_metadata(config)["token_endpoint"]
        session = OAuth2Session(
            config.client_id,
            config.private_key_pem,
            token_endpoint_auth_method=PrivateKeyJWT.name,
            scope=config.scopes,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            default_timeout=config.timeout_seconds,
        )
        headers = {"kid": config.key_id} if config.key_id else None
        session.register_client_auth_method(
            PrivateKeyJWT(token_endpoint, alg="RS256", headers=headers)
        )
        return session
    return OAuth2Session(
        config.client_id,
        config.client_secret,
        token_endpoint_auth_method="client_secret_basic",  # noqa: S106 (a method, not a secret)
        scope=config.scopes,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        default_timeout=config.timeout_seconds,
    )


@dataclass(frozen=True)
class AuthorizationStart:
    """Where to send the browser, and what to keep in the session until it comes back."""

    url: str
    state: str
    nonce: str
    code_verifier: str


def authorization_start(config: ProviderConfig, *, redirect_uri: str) -> AuthorizationStart:
    """The authorization request: code flow, PKCE S256, a fresh state and nonce."""
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    extra = {"acr_values": config.acr_values} if config.acr_values else {}
    url, _ = _session(config, redirect_uri).create_authorization_url(
        provider_metadata(config)["authorization_endpoint"],
        state=state,
        nonce=nonce,
        code_verifier=verifier,
        **extra,
    )
    return AuthorizationStart(url=url, state=state, nonce=nonce, code_verifier=verifier)


def code_exchange(
    config: ProviderConfig, *, code: str, code_verifier: str, redirect_uri: str
) -> dict[str, Any]:
    """The token response for an authorization code (the verifier proves we started it)."""
    try:
        token = _session(config, redirect_uri).fetch_token(
            provider_metadata(config)["token_endpoint"],
            grant_type="authorization_code",
            code=code,
            code_verifier=code_verifier,
        )
    except (requests.RequestException, ValueError, OAuthError) as exc:
        raise SsoError("token-exchange") from exc
    if not isinstance(token, Mapping) or not isinstance(token.get("id_token"), str):
        raise SsoError("no-id-token")
    return dict(token)


def id_token_verify(
    *,
    id_token: str,
    keys: KeySet,
    issuer: str,
    client_id: str,
    nonce: str,
    leeway: int = 60,
    now: int | None = None,
) -> dict[str, Any]:
    """The ID token's claims once its signature, issuer, audience, expiry and nonce hold.

    Raises SsoError: `id-token-signature` (bad signature, unknown key, not a JWT,
    an algorithm outside ID_TOKEN_ALGORITHMS), `id-token-expired`, `id-token-claims`
    (issuer, audience, nonce, authorized party or a required claim wrong or missing).
    """
    try:
        token = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS)
    except (JoseError, ValueError, TypeError) as exc:
        raise SsoError("id-token-signature") from exc
    registry = JWTClaimsRegistry(
        now=now,
        leeway=leeway,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(token.claims)
    except ExpiredTokenError as exc:
        raise SsoError("id-token-expired") from exc
    except (JoseError, ValueError, TypeError) as exc:
        raise SsoError("id-token-claims") from exc
    audience = token.claims.get("aud")
    if isinstance(audience, list) and len(audience) > 1 and token.claims.get("azp") != client_id:
        raise SsoError("id-token-claims")
    return dict(token.claims)


def id_token_check(config: ProviderConfig, *, id_token: str, nonce: str) -> dict[str, Any]:
    """id_token_verify with the provider's cached keys, fetched once more on a key miss."""
    try:
        return id_token_verify(
            id_token=id_token, keys=provider_keys(config), issuer=config.issuer,
            client_id=config.client_id, nonce=nonce, leeway=config.leeway_seconds,
        )  # fmt: skip
    except SsoError as error:
        if error.code != "id-token-signature":
            raise
    return id_token_verify(
        id_token=id_token, keys=provider_keys(config, refresh=True), issuer=config.issuer,
        client_id=config.client_id, nonce=nonce, leeway=config.leeway_seconds,
    )  # fmt: skip


def userinfo_fetch(config: ProviderConfig, *, access_token: str, subject: str) -> dict[str, Any]:
    """The user info (CIS2 puts the role profiles here); its `sub` must be the ID token's."""
    endpoint = provider_metadata(config).get("userinfo_endpoint")
    if not endpoint:
        return {}
    info = _get_json(
        endpoint,
        timeout=config.timeout_seconds,
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
    )
    if not isinstance(info, dict) or info.get("sub") != subject:
        raise SsoError("userinfo-subject")
    return info


def end_session_url(config: ProviderConfig, *, id_token: str, post_logout_redirect_uri: str) -> str:
    """Where RP-initiated logout sends the browser, or "" when the provider offers none."""
    try:
        endpoint = provider_metadata(config).get("end_session_endpoint")
    except SsoError:
        return ""
    if not endpoint:
        return ""
    query = urlencode(
        {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": post_logout_redirect_uri,
            "client_id": config.client_id,
        }
    )
    return f"{endpoint}?{query}"
