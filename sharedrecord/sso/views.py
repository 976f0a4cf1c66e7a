"""Single sign-on pages: start, the provider's callback, the role choice, the refusal.

The session keeps, between the start and the callback, only the state, nonce and
PKCE verifier; between the callback and the role choice, the subject, names, acr
and role profiles the provider vouched for. After sign-in it keeps how the session
signed in (`sign_in`: via, assurance level, role profile, the ID token for logout).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from audit.context import context_for
from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditActor, audit_event_record
from sharedrecord.access import assurance_level_of, sso_profile_refusal, sso_role_for
from sharedrecord.models import Organisation, StaffRole
from sharedrecord.sso.claims import RoleProfile, role_profile_selected, role_profiles_from
from sharedrecord.sso.provider import (
    ProviderConfig,
    SsoError,
    authorization_start,
    code_exchange,
    id_token_check,
    provider_config,
    userinfo_fetch,
)
from sharedrecord.sso.signin import ProfileRefused, sso_sign_in

PENDING = "sso_pending"
SIGNED = "sso_signed"
SIGN_IN = "sign_in"

# What each refusal tells the member of staff (never a claim's value beyond their own roles).
REFUSALS = {
    "unknown-organisation": "The organisation of this role is not part of the shared care record.",
    "no-agreement": (
        "The organisation of this role has no active data sharing agreement with the shared "
        "care record, so its staff cannot use it."
    ),
    "unmapped-role": (
        "This role has no access to the shared care record. Ask your registration authority "
        "if you think it should."
    ),
    "no-role-profile": "Your NHS identity holds no role profile this service can use.",
    "provider-error": "Your identity provider did not sign you in.",
    "state": "This sign-in was not started here, or it was started too long ago.",
    "id-token-expired": "Your identity provider's sign-in had expired.",
}
GENERIC_REFUSAL = "Your sign-in could not be checked. Try again, or contact your service desk."


def _config() -> ProviderConfig:
    config = provider_config()
    if config is None:
        raise Http404("Single sign-on is not configured.")
    return config


def _redirect_uri(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("sso-callback"))


def _refused(request: HttpRequest, code: str, *, audited: bool = False) -> HttpResponse:
    if not audited:
        audit_event_record(
            action=AuditAction.SIGN_IN_FAILED,
            actor=AuditActor.anonymous(),
            outcome=AuditOutcome.DENIED,
            detail={"via": "oidc", "reason": code},
            context=context_for(request),
        )
    request.session.pop(PENDING, None)
    request.session.pop(SIGNED, None)
    context = {"message": REFUSALS.get(code, GENERIC_REFUSAL), "code": code}
    return render(request, "sharedrecord/sso_refused.html", context, status=403)


@require_GET
@never_cache
def sso_start(request: HttpRequest) -> HttpResponseBase:
    """Send the browser to the provider: code flow with PKCE, state and nonce kept here."""
    config = _config()
    try:
        start = authorization_start(config, redirect_uri=_redirect_uri(request))
    except SsoError as error:
        return _refused(request, error.code)
    wanted = request.GET.get("next", "")
    safe = url_has_allowed_host_and_scheme(wanted, {request.get_host()}, request.is_secure())
    request.session[PENDING] = {
        "state": start.state,
        "nonce": start.nonce,
        "verifier": start.code_verifier,
        "next": wanted if safe else "",
    }
    return redirect(start.url)


@require_GET
@never_cache
def sso_callback(request: HttpRequest) -> HttpResponseBase:
    """The provider's answer: check state, exchange the code, check the ID token, then roles."""
    config = _config()
    pending = request.session.pop(PENDING, None)
    if request.GET.get("error"):
        return _refused(request, "provider-error")
    if not pending or request.GET.get("state", "") != pending["state"]:
        return _refused(request, "state")
    if request.GET.get("iss", config.issuer) != config.issuer:  # RFC 9207: mix-up defence
        return _refused(request, "provider-error")
    try:
        token = code_exchange(
            config, code=request.GET.get("code", ""), code_verifier=pending["verifier"],
            redirect_uri=_redirect_uri(request),
        )  # fmt: skip
        claims = id_token_check(config, id_token=token["id_token"], nonce=pending["nonce"])
        subject = str(claims["sub"])
        info = userinfo_fetch(
            config, access_token=str(token.get("access_token", "")), subject=subject
        )
    except SsoError as error:
        return _refused(request, error.code)
    merged = {**info, **{k: v for k, v in claims.items() if v not in (None, "", [])}}
    profiles = role_profiles_from(merged)
    acr = str(claims.get("acr", "")) if isinstance(claims.get("acr", ""), str) else ""
    request.session[SIGNED] = {
        "issuer": config.issuer,
        "subject": subject,
        "claims": {k: merged.get(k, "") for k in ("given_name", "family_name", "email")},
        "acr": acr,
        "profiles": [p.as_dict() for p in profiles],
        "id_token": token["id_token"],
        "next": pending.get("next", ""),
    }
    if not profiles:
        return _refused(request, "no-role-profile")
    only = profiles[0] if len(profiles) == 1 else None
    chosen = role_profile_selected(profiles, merged) or only
    if chosen is None:
        return redirect("sso-role")
    return _sign_in(request, chosen)


def _signed(request: HttpRequest) -> tuple[dict[str, Any], list[RoleProfile]]:
    signed = request.session.get(SIGNED)
    if not signed:
        raise Http404("No sign-in is waiting for a role.")
    profiles = [
        RoleProfile(**{**p, "activity_codes": tuple(p["activity_codes"])})
        for p in signed["profiles"]
    ]
    return signed, profiles


def _sign_in(request: HttpRequest, chosen: RoleProfile) -> HttpResponseBase:
    signed, profiles = _signed(request)
    level = assurance_level_of(signed["acr"])
    try:
        user = sso_sign_in(
            issuer=signed["issuer"], subject=signed["subject"], profile=chosen, listed=profiles,
            claims=signed["claims"], acr=signed["acr"], level=level, context=context_for(request),
        )  # fmt: skip
    except ProfileRefused as refused:
        return _refused(request, refused.code, audited=True)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session.pop(SIGNED, None)
    request.session[SIGN_IN] = {
        "via": "oidc",
        "assurance_level": level,
        "role_profile": chosen.person_roleid,
        "id_token": signed["id_token"],
    }
    return redirect(signed.get("next") or settings.LOGIN_REDIRECT_URL)


@require_http_methods(["GET", "POST"])
@never_cache
def sso_role_page(request: HttpRequest) -> HttpResponseBase:
    """Choose which role profile to work in, when the provider did not select one."""
    _config()
    signed, profiles = _signed(request)
    if request.method == "POST":
        wanted = request.POST.get("role_profile", "")
        chosen = next((p for p in profiles if p.person_roleid == wanted), None)
        if chosen is not None:
            return _sign_in(request, chosen)
    organisations = {
        o.ods_code: o
        for o in Organisation.objects.filter(ods_code__in=[p.org_code for p in profiles])
    }
    rows = []
    for profile in profiles:
        organisation = organisations.get(profile.org_code)
        role = sso_role_for(profile.role_code)
        rows.append(
            {
                "profile": profile,
                "organisation": organisation.name if organisation else profile.org_code,
                "role": StaffRole(role).label if role else profile.role_name or profile.role_code,
                "usable": not sso_profile_refusal(organisation=organisation, role=role),
            }
        )
    error = request.method == "POST"
    context = {"rows": rows, "error": error, "given_name": signed["claims"].get("given_name", "")}
    return render(request, "sharedrecord/sso_role.html", context, status=400 if error else 200)
