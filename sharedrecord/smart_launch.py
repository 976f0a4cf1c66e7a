"""SMART App Launch (EHR launch) into the record: `/smart/launch?iss=&launch=`.

Steps:
1. `iss` must be the FHIR base URL of a registered SMART EHR (launch_system_register
   --smart-fhir-base); anything else is refused before any request leaves, so a link
   cannot make us call an arbitrary server.
2. The EHR's `.well-known/smart-configuration` (cached) names its authorization and token
   endpoints; the browser goes to the first with the code flow, PKCE S256, `state`,
   `nonce`, `aud` = iss, the `launch` value, and the scopes `launch openid fhirUser
   patient/Patient.read` (authlib's client).
3. Back at `/smart/callback`: `state` checked, the code exchanged (client_secret_basic,
   the PKCE verifier), the ID token checked against the EHR's registered keys (signature,
   issuer, audience, expiry, nonce; joserfc), the token response's `patient` read.
4. The EHR's `Patient/<patient>` is read with the access token for the NHS number.
5. The user's role profile comes from the ID token's CIS2-shaped claims (the selected one,
   or the only one); then the same as a signed launch (launch_views.launch_open).
Every refusal opens nothing and is audited.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, cast

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from audit.context import context_for
from sharedrecord.launch import LaunchRefused, launch_refusal_record, launch_system_keys
from sharedrecord.launch_views import launch_open, launch_refused_page
from sharedrecord.models import LaunchSystem
from sharedrecord.sso.claims import role_profile_selected, role_profiles_from
from sharedrecord.sso.provider import SsoError, id_token_verify

SCOPES = "launch openid fhirUser patient/Patient.read"
PENDING = "smart_launch_pending"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
REFUSALS = {
    "unknown-issuer": "The system that opened this page is not registered with this service.",
    "ehr-unreachable": "The launching system could not be reached. Try again shortly.",
    "state": "This launch was not started here, or it was started too long ago.",
    "token-exchange": "The launching system did not confirm the launch.",
    "no-patient-context": "The launching system did not say which person to open.",
    "no-nhs-number": "The launching system's record of the person holds no NHS number.",
    "no-role-profile": "The launching system did not say which role you are working in.",
}


def _refused(request: HttpRequest, code: str, system: LaunchSystem | None) -> HttpResponse:
    launch_refusal_record(refused=LaunchRefused(code, system), context=context_for(request))
    message = REFUSALS.get(code, "The launch could not be accepted.")
    return launch_refused_page(request, code, message)


def _get_json(url: str, **headers: str) -> Any:
    try:
        answer = requests.get(url, timeout=settings.OIDC_TIMEOUT_SECONDS, headers=headers)
        answer.raise_for_status()
        return answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise LaunchRefused("ehr-unreachable") from exc


def smart_configuration(system: LaunchSystem) -> dict[str, Any]:
    """The EHR's SMART configuration (cached for OIDC_CACHE_SECONDS)."""
    key = f"smart-configuration:{system.public_id}"
    found = cache.get(key)
    if found is None:
        found = _get_json(system.smart_fhir_base + "/.well-known/smart-configuration")
        endpoints = ("authorization_endpoint", "token_endpoint")
        if not isinstance(found, dict) or not all(isinstance(found.get(e), str) for e in endpoints):
            raise LaunchRefused("ehr-unreachable")
        cache.set(key, found, settings.OIDC_CACHE_SECONDS)
    return cast(dict[str, Any], found)


def _client(system: LaunchSystem, request: HttpRequest) -> OAuth2Session:
    return OAuth2Session(
        system.smart_client_id,
        system.smart_client_secret,
        token_endpoint_auth_method="client_secret_basic",  # noqa: S106 (a method name)
        scope=SCOPES,
        redirect_uri=request.build_absolute_uri(reverse("smart-callback")),
        code_challenge_method="S256",
        default_timeout=settings.OIDC_TIMEOUT_SECONDS,
    )


@require_GET
@never_cache
def smart_launch_page(request: HttpRequest) -> HttpResponseBase:
    """Steps 1 and 2: a registered EHR's launch, sent on to its authorization server."""
    iss = request.GET.get("iss", "").rstrip("/")
    launch = request.GET.get("launch", "")
    system = LaunchSystem.objects.filter(smart_fhir_base=iss, active=True).first() if iss else None
    if system is None or not launch or len(launch) > 2000:
        return _refused(request, "unknown-issuer", system)
    try:
        configuration = smart_configuration(system)
    except LaunchRefused as refused:
        return _refused(request, refused.code, system)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    url, _ = _client(system, request).create_authorization_url(
        configuration["authorization_endpoint"], state=state, nonce=nonce,
        code_verifier=verifier, launch=launch, aud=iss,
    )  # fmt: skip
    request.session[PENDING] = {
        "system": str(system.public_id),
        "state": state,
        "nonce": nonce,
        "verifier": verifier,
    }
    return redirect(url)


@require_GET
@never_cache
def smart_callback_page(request: HttpRequest) -> HttpResponseBase:
    """Steps 3 to 5: the code, the ID token, the Patient's NHS number, then open."""
    pending = request.session.pop(PENDING, None)
    system = (
        LaunchSystem.objects.filter(public_id=pending["system"], active=True).first()
        if pending
        else None
    )
    if system is None or pending is None or request.GET.get("state", "") != pending["state"]:
        return _refused(request, "state", system)
    try:
        configuration = smart_configuration(system)
        token = _client(system, request).fetch_token(
            configuration["token_endpoint"], grant_type="authorization_code",
            code=request.GET.get("code", ""), code_verifier=pending["verifier"],
        )  # fmt: skip
    except (LaunchRefused, OAuthError, requests.RequestException, ValueError):
        return _refused(request, "token-exchange", system)
    try:
        claims = id_token_verify(
            id_token=str(token.get("id_token", "")), keys=launch_system_keys(system),
            issuer=system.issuer, client_id=system.smart_client_id, nonce=pending["nonce"],
            leeway=settings.OIDC_LEEWAY_SECONDS,
        )  # fmt: skip
    except SsoError as error:
        return _refused(request, error.code, system)
    except LaunchRefused as refused:
        return _refused(request, refused.code, system)
    patient_id = token.get("patient")
    if not isinstance(patient_id, str) or not FHIR_ID.match(patient_id):
        return _refused(request, "no-patient-context", system)
    try:
        patient = _get_json(
            f"{system.smart_fhir_base}/Patient/{patient_id}",
            Authorization=f"Bearer {token['access_token']}",
            Accept="application/fhir+json",
        )
    except LaunchRefused:
        return _refused(request, "ehr-unreachable", system)
    nhs_number = _nhs_number(patient)
    if not nhs_number:
        return _refused(request, "no-nhs-number", system)
    profiles = role_profiles_from(claims)
    only = profiles[0] if len(profiles) == 1 else None
    profile = role_profile_selected(profiles, claims) or only
    if profile is None:
        return _refused(request, "no-role-profile", system)
    names = {k: str(claims.get(k, ""))[:150] for k in ("given_name", "family_name")}
    acr = claims.get("acr", "")
    return launch_open(
        request, system=system, subject=str(claims["sub"]), profile=profile, names=names,
        acr=acr if isinstance(acr, str) else "", nhs_number=nhs_number, via="smart-launch",
    )  # fmt: skip


def _nhs_number(patient: object) -> str:
    """The NHS number a FHIR Patient's identifiers carry ("" when none, or not a Patient)."""
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        return ""
    for identifier in patient.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == NHS_NUMBER_SYSTEM:
            value = identifier.get("value")
            if isinstance(value, str):
                return value.replace(" ", "")[:20]
    return ""
