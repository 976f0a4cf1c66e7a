"""Signed context launch: a registered clinical system opens one person's record.

The clinician's own system posts a short-lived JWT it signed to `/launch`. Steps:
1. Read the token's `iss` without trusting it yet (joserfc takes the compact JWS apart)
   and find that registered, active system; none is `unknown-issuer`.
2. Verify the signature with the system's keys (its JWKS kept from a file, or its JWKS
   URL fetched and cached, fetched once more on a key miss): `signature`.
3. Check the claims: `aud` is this platform (LAUNCH_AUDIENCE) `audience`; `exp` not
   passed `expired`; `iat`, `exp`, `sub`, `jti`, `org`, `role` and `nhs_number` present,
   and at most LAUNCH_MAX_SECONDS (300) from `iat` to `exp` `claims`.
4. Spend the `jti`: a unique row per system and jti, kept until the token expires;
   a second use is `replayed`.
Every refusal is audited (launch_refusal_record). What follows (signing the user in as
the role the token names, finding the person, the basis) is the view's, through the
same services as single sign-on and the record pages.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact
from joserfc.jwt import JWTClaimsRegistry

from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditActor, AuditContext, audit_event_record
from sharedrecord.models import LaunchSystem, LaunchTokenSeen, Organisation

ALGORITHMS = ["RS256", "PS256", "ES256"]
LEEWAY_SECONDS = 30


class LaunchRefused(Exception):
    """A launch that opens nothing; `code` says why (never a claim's value)."""

    def __init__(self, code: str, system: LaunchSystem | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.system = system


@dataclass(frozen=True)
class Launch:
    """What a verified launch token says."""

    system: LaunchSystem
    subject: str
    org_code: str
    role_code: str
    person_roleid: str
    nhs_number: str
    acr: str
    given_name: str
    family_name: str


def _text(claims: dict[str, Any], name: str, limit: int = 200) -> str:
    value = claims.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def _unverified_issuer(token: str) -> str:
    try:
        payload = json.loads(extract_compact(token.encode()).payload)
    except (JoseError, ValueError, TypeError, UnicodeDecodeError):
        return ""
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    return issuer[:300] if isinstance(issuer, str) else ""


def launch_system_keys(system: LaunchSystem, *, refresh: bool = False) -> KeySet:
    """The system's public keys: its stored JWKS, or its JWKS URL's (cached an hour)."""
    jwks: Any = system.jwks
    if system.jwks_url:
        key = f"launch-jwks:{system.public_id}"
        jwks = None if refresh else cache.get(key)
        if jwks is None:
            try:
                answer = requests.get(system.jwks_url, timeout=settings.OIDC_TIMEOUT_SECONDS)
                answer.raise_for_status()
                jwks = answer.json()
            except (requests.RequestException, ValueError) as exc:
                raise LaunchRefused("keys-unavailable", system) from exc
            cache.set(key, jwks, settings.LAUNCH_JWKS_CACHE_SECONDS)
    try:
        return KeySet.import_key_set(jwks)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise LaunchRefused("keys-unavailable", system) from exc


def _decoded(token: str, system: LaunchSystem) -> dict[str, Any]:
    for refresh in (False, True):
        try:
            return dict(
                jwt.decode(token, launch_system_keys(system, refresh=refresh), ALGORITHMS).claims
            )
        except (JoseError, ValueError, TypeError):
            if refresh or not system.jwks_url:
                break
    raise LaunchRefused("signature", system)


def launch_verify(*, token: str, audience: str, now: int | None = None) -> Launch:
    """The launch a token carries, once steps 1 to 4 hold; raises LaunchRefused otherwise."""
    if not token or len(token) > 16_000:
        raise LaunchRefused("malformed")
    issuer = _unverified_issuer(token)
    system = (
        LaunchSystem.objects.select_related("organisation")
        .filter(issuer=issuer, active=True)
        .first()
        if issuer
        else None
    )
    if system is None:
        raise LaunchRefused("unknown-issuer")
    claims = _decoded(token, system)
    registry = JWTClaimsRegistry(
        now=now,
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": system.issuer},
        sub={"essential": True},
        jti={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError as exc:
        raise LaunchRefused("expired", system) from exc
    except (JoseError, ValueError, TypeError) as exc:
        raise LaunchRefused("claims", system) from exc
    audiences = claims.get("aud")
    if audience not in (audiences if isinstance(audiences, list) else [audiences]):
        raise LaunchRefused("audience", system)
    exp, iat = claims["exp"], claims["iat"]
    if not (isinstance(exp, int) and isinstance(iat, int)):
        raise LaunchRefused("claims", system)
    if exp - iat > settings.LAUNCH_MAX_SECONDS:
        raise LaunchRefused("lifetime", system)
    launch = Launch(
        system=system,
        subject=_text(claims, "sub"),
        org_code=_text(claims, "org", 12).upper(),
        role_code=_text(claims, "role", 100),
        person_roleid=_text(claims, "person_roleid", 100),
        nhs_number=_text(claims, "nhs_number", 20),
        acr=_text(claims, "acr", 64),
        given_name=_text(claims, "given_name", 150),
        family_name=_text(claims, "family_name", 150),
    )
    if not (launch.subject and launch.org_code and launch.role_code and launch.nhs_number):
        raise LaunchRefused("claims", system)
    if system.organisation and system.organisation.ods_code != launch.org_code:
        raise LaunchRefused("organisation", system)
    _spend(system=system, jti=_text(claims, "jti"), exp=exp)
    return launch


def _spend(*, system: LaunchSystem, jti: str, exp: int) -> None:
    """Step 4: the jti opens the record once (expired rows are cleared as we go)."""
    if not jti:
        raise LaunchRefused("claims", system)
    LaunchTokenSeen.objects.filter(expires_at__lt=timezone.now()).delete()
    try:
        with transaction.atomic():
            LaunchTokenSeen.objects.create(
                issuer=system.issuer,
                jti=jti,
                expires_at=datetime.datetime.fromtimestamp(exp + LEEWAY_SECONDS, tz=datetime.UTC),
            )
    except IntegrityError as exc:
        raise LaunchRefused("replayed", system) from exc


def launch_refusal_record(*, refused: LaunchRefused, context: AuditContext) -> None:
    """One `sign-in-failed` event for a refused launch, naming the system when known."""
    system = refused.system
    audit_event_record(
        action=AuditAction.SIGN_IN_FAILED,
        actor=AuditActor.system(system.name, org_ods=system.organisation.ods_code)
        if system and system.organisation
        else AuditActor.system(system.name)
        if system
        else AuditActor.anonymous(),
        outcome=AuditOutcome.DENIED,
        detail={"via": "launch", "reason": refused.code},
        context=context,
    )


@transaction.atomic
def launch_system_register(
    *,
    name: str,
    issuer: str,
    jwks_url: str = "",
    jwks: dict[str, Any] | None = None,
    organisation: Organisation | None = None,
    assurance_level: int = 3,
    smart_fhir_base: str = "",
    smart_client_id: str = "",
    smart_client_secret: str = "",
) -> LaunchSystem:
    """Register a launching system, or update the one with this issuer (idempotent).

    A SMART EHR also gives its FHIR base URL (the `iss` of its launches) and our client
    id and secret with its authorization server; `issuer` and the keys are then its ID
    tokens'.

    Exactly one key source: a JWKS URL (https, or http on localhost for tests) or a JWKS
    whose public keys are read now. Raises ValidationError naming what is wrong.
    Side effects: the row; one `admin-change` audit event.
    """
    if bool(jwks_url) == (jwks is not None):
        raise ValidationError("Give either a JWKS URL or a JWKS file.")
    if jwks is not None:
        try:
            keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ValidationError("The JWKS file holds no readable public key.") from exc
        if any(key.is_private for key in keys.keys):
            raise ValidationError(
                "The JWKS file holds a private key: register the public keys only."
            )
    if jwks_url and not (
        jwks_url.startswith("https://")
        or jwks_url.startswith(("http://127.0.0.1:", "http://localhost:"))
    ):
        raise ValidationError("The JWKS URL must use https.")
    if smart_fhir_base and not (smart_client_id and smart_client_secret):
        raise ValidationError("A SMART EHR needs our client id and secret with it.")
    system = LaunchSystem.objects.filter(issuer=issuer).first() or LaunchSystem(issuer=issuer)
    system.smart_fhir_base = smart_fhir_base.rstrip("/")
    system.smart_client_id = smart_client_id
    system.smart_client_secret = smart_client_secret
    system.name = name
    system.jwks_url = jwks_url
    system.jwks = jwks
    system.organisation = organisation
    system.assurance_level = assurance_level
    system.active = True
    system.full_clean()
    system.save()
    cache.delete(f"launch-jwks:{system.public_id}")
    audit_event_record(
        action=AuditAction.ADMIN_CHANGE,
        actor=AuditActor.system("launch_system_register"),
        detail={
            "launch_system": str(system.public_id),
            "name": name,
            "issuer": issuer,
            "keys": "url" if jwks_url else "file",
            "smart_fhir_base": system.smart_fhir_base,
            "organisation": organisation.ods_code if organisation else "",
        },
    )
    return system


# The session's keys: the launched session's system and person (launch_views), and the
# person whose record the member of staff opened last (the record pages).
SESSION_LAUNCH = "launch"
SESSION_RECORD_OPEN = "record_open"


def session_person_in_context(request: Any) -> str:
    """The public id of the person in this session's context ("" when none).

    The launched person in a launched session, else the person whose record was opened
    last. The FHIR read API's EHR launch context (`launch`, `launch/patient`) is this person.
    """
    session = getattr(request, "session", None)
    if session is None:
        return ""
    launched = session.get(SESSION_LAUNCH) or {}
    return str(launched.get("patient") or session.get(SESSION_RECORD_OPEN) or "")
