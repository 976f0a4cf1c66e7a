"""`/launch`: the signed context launch's page (verification is sharedrecord/launch.py).

A POST from the clinician's own system (so neither the token nor the NHS number in it
travels in a URL); no CSRF token, since the signed, single-use, audience-bound token is
what proves the request. The user signs in as the role the token names (the single
sign-on account service, `via` launch), the person is found by NHS number (opted-out and
unknown look alike), a direct-care basis "Launched from <system>" is recorded, and the
summary opens. The session is pinned to that person: another needs a search first.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from audit.context import context_for
from sharedrecord.access import assurance_level_of, assurance_may_read, basis_kind_routine
from sharedrecord.basis import access_basis_record
from sharedrecord.launch import (
    SESSION_LAUNCH,
    LaunchRefused,
    launch_refusal_record,
    launch_verify,
)
from sharedrecord.models import BasisKind, LaunchSystem
from sharedrecord.search import patient_search
from sharedrecord.sso.claims import RoleProfile
from sharedrecord.sso.signin import ProfileRefused, sso_sign_in
from sharedrecord.sso.views import REFUSALS, SIGN_IN

LAUNCH = SESSION_LAUNCH
LAUNCH_REFUSALS = {
    "unknown-issuer": "The system that opened this page is not registered with this service.",
    "signature": "The launch could not be verified: its signature is not right.",
    "expired": "The launch had expired. Open the shared care record from your system again.",
    "replayed": "This launch has already been used. Open the record from your system again.",
    "audience": "The launch was meant for another service.",
    "lifetime": "The launch was valid for too long to be accepted.",
    "organisation": "The launch names an organisation the launching system does not serve.",
    "keys-unavailable": "The launching system's keys could not be read. Try again shortly.",
}  # fmt: skip


def launch_audience(request: HttpRequest) -> str:
    """The audience launch tokens must name: LAUNCH_AUDIENCE, or this site's /launch."""
    return settings.LAUNCH_AUDIENCE or request.build_absolute_uri("/launch")


def launch_refused_page(request: HttpRequest, code: str, message: str) -> HttpResponse:
    context = {"message": message, "code": code}
    return render(request, "sharedrecord/launch_refused.html", context, status=403)


@csrf_exempt
@require_POST
@never_cache
def launch_page(request: HttpRequest) -> HttpResponseBase:
    """Verify the launch, sign the user in, find the person, record the basis, open the record."""
    context = context_for(request)
    try:
        launch = launch_verify(
            token=request.POST.get("launch", ""), audience=launch_audience(request)
        )
    except LaunchRefused as refused:
        launch_refusal_record(refused=refused, context=context)
        message = LAUNCH_REFUSALS.get(refused.code, "The launch could not be accepted.")
        return launch_refused_page(request, refused.code, message)
    profile = RoleProfile(
        person_roleid=launch.person_roleid or f"{launch.org_code}-{launch.role_code}",
        org_code=launch.org_code,
        role_code=launch.role_code,
    )
    return launch_open(
        request, system=launch.system, subject=launch.subject, profile=profile,
        names={"given_name": launch.given_name, "family_name": launch.family_name},
        acr=launch.acr, nhs_number=launch.nhs_number, via="launch",
    )  # fmt: skip


def launch_open(
    request: HttpRequest,
    *,
    system: LaunchSystem,
    subject: str,
    profile: RoleProfile,
    names: dict[str, str],
    acr: str,
    nhs_number: str,
    via: str,
) -> HttpResponse:
    """After a verified launch (signed or SMART): sign in, find, record the basis, open.

    Side effects: the user's account (sso_sign_in, `via`), a session pinned to the
    person, one search event, one basis event "Launched from <system>".
    """
    context = context_for(request)
    level = system.assurance_level
    if acr:
        level = min(level, assurance_level_of(acr))
    try:
        user = sso_sign_in(
            issuer=f"launch:{system.issuer}", subject=subject, profile=profile, listed=None,
            claims=dict(names), acr=acr, level=level, context=context, via=via,
            detail={"system": system.name},
        )  # fmt: skip
    except ProfileRefused as refused:
        return launch_refused_page(request, refused.code, REFUSALS[refused.code])
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[SIGN_IN] = {"via": via, "assurance_level": level, "system": system.name}
    request.session[LAUNCH] = {"system": system.name, "patient": "", "searched": []}
    patient = patient_search(
        viewer=user, nhs_number=nhs_number, context=context,
        detail={"via": via, "system": system.name},
    )  # fmt: skip
    if patient is None:
        return render(request, "sharedrecord/record_not_found.html", status=404)
    request.session[LAUNCH] = {"system": system.name, "patient": str(patient.public_id)}
    if basis_kind_routine() == BasisKind.DIRECT_CARE and assurance_may_read(level):
        access_basis_record(
            viewer=user, patient_id=str(patient.public_id),
            session_key=request.session.session_key or "", kind=BasisKind.DIRECT_CARE,
            claimed_relationship=f"Launched from {system.name}", context=context,
            launched_from=system.name,
        )  # fmt: skip
    return redirect("record", patient_id=patient.public_id)


def launch_pinned_elsewhere(request: HttpRequest, patient_id: object) -> HttpResponse | None:
    """A launched session opens only its person, or one the user searched for since."""
    pinned = request.session.get(LAUNCH)
    if not pinned or not pinned.get("patient"):
        return None
    allowed = {pinned["patient"], *pinned.get("searched", [])}
    if str(patient_id) in allowed:
        return None
    context = {"system": pinned["system"]}
    return render(request, "sharedrecord/launch_pinned.html", context, status=403)


def launch_searched(request: HttpRequest, patient_ids: list[str]) -> None:
    """The people a launched session's own search found: the user may now open them."""
    pinned = request.session.get(LAUNCH)
    if pinned and pinned.get("patient"):
        searched = set(pinned.get("searched", [])) | set(patient_ids)
        request.session[LAUNCH] = {**pinned, "searched": sorted(searched)}
