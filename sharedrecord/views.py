"""Staff pages: sign-in, finding a person, the access basis and the read-only record.

Views translate HTTP to one service call and a template; every decision is in
access.py and every audited read is a service (STYLE.md sections 3 and 4).
Record routes answer GET only (a test walks them); only the access basis
pages take a POST, and what they write is the basis, never the record.
"""

from __future__ import annotations

import datetime
from base64 import b32encode
from typing import Any, cast
from urllib.parse import quote
from uuid import UUID

from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp import login as otp_login

from audit.context import context_for
from audit.governance import audit_unreviewed_count
from audit.models import AuditAction, AuditOutcome
from audit.trail import AuditActor, audit_event_record
from sharedrecord.access import (
    assurance_may_read,
    basis_kind_routine,
    data_quality_scope_for,
    feed_operator_for,
    governance_viewer_for,
    optout_objections_office_for,
    optout_practice_for,
    role_may_read_records,
    viewer_may_search,
)
from sharedrecord.auditing import actor_for
from sharedrecord.basis import BasisChoice, access_basis_options, access_basis_record
from sharedrecord.exceptions import (
    AccessBasisRequired,
    PatientNotFound,
    SectionNotAvailable,
    SectionPageNotFound,
)
from sharedrecord.launch import SESSION_RECORD_OPEN
from sharedrecord.launch_views import launch_pinned_elsewhere, launch_searched
from sharedrecord.live import live_record_pull
from sharedrecord.models import (
    BasisKind,
    Organisation,
    OrganisationKind,
    OverrideReason,
    RecordSection,
    StaffRole,
    User,
)
from sharedrecord.oauth.consent import api_tokens_revoke_for
from sharedrecord.policy import policy_table
from sharedrecord.presentation.notices import record_notices
from sharedrecord.presentation.types import DATE_LABELS
from sharedrecord.presenting import document_text
from sharedrecord.record import ResultFilters, document_view, record_view
from sharedrecord.search import SEARCH_RESULT_CAP, patient_search, patient_search_by_demographics
from sharedrecord.secondfactor import (
    second_factor_needed,
    totp_device_confirmed,
    totp_device_enrolling,
    totp_verify,
)
from sharedrecord.sessions import session_renew
from sharedrecord.sso.provider import end_session_url, provider_config
from sharedrecord.sso.views import SIGN_IN
from sharedrecord.timeline import TimelineFilters, record_timeline

# ------------------------------------------------------------------ sign-in and session


class SignInView(auth_views.LoginView):
    """Django's sign-in, audited: every success and failure writes one event.

    The failure message is the same for an unknown username, a wrong password
    and a locked-out account (AuthenticationForm's wording and django-axes'
    page), so sign-in cannot be used to learn who has an account.
    """

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        user = form.get_user()
        if second_factor_needed(user):
            # The password was right; nothing opens until the one-time code is too.
            self.request.session.cycle_key()
            self.request.session[SECOND_FACTOR] = {
                "user": user.public_id.hex,
                "next": self.get_success_url(),
            }
            return redirect("sign-in-code")
        response = super().form_valid(form)
        self.request.session[SIGN_IN] = {"via": "password", "assurance_level": 1}
        audit_event_record(
            action=AuditAction.SIGN_IN,
            actor=actor_for(user),
            context=context_for(self.request),
        )
        return response

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.SIGN_IN_PASSWORDS:
            raise PermissionDenied("Sign in with your NHS identity: passwords are turned off.")
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        audit_event_record(
            action=AuditAction.SIGN_IN_FAILED,
            actor=AuditActor.anonymous(str(form.data.get("username", ""))),
            outcome=AuditOutcome.DENIED,
            detail={"locked_out": bool(getattr(self.request, "axes_locked_out", False))},
            context=context_for(self.request),
        )
        return super().form_invalid(form)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["timed_out"] = self.request.GET.get("timeout") == "1"
        context["sso_provider"] = settings.OIDC_PROVIDER_NAME if settings.OIDC_ISSUER else ""
        context["passwords"] = settings.SIGN_IN_PASSWORDS
        return context


SECOND_FACTOR = "second_factor"


@require_http_methods(["GET", "POST"])
@never_cache
def sign_in_code_page(request: HttpRequest) -> HttpResponseBase:
    """After a right password: the authenticator's code, or enrolling one (audited)."""
    pending = request.session.get(SECOND_FACTOR)
    user = (
        User.objects.filter(public_id=pending["user"], is_active=True).first() if pending else None
    )
    if user is None:
        return redirect(settings.LOGIN_URL)
    device = totp_device_confirmed(user)
    enrolling = device is None
    if device is None:
        device = totp_device_enrolling(user)
    error = ""
    if request.method == "POST":
        if totp_verify(device=device, code=request.POST.get("code", "")):
            request.session.pop(SECOND_FACTOR, None)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            otp_login(request, device)
            request.session[SIGN_IN] = {"via": "password", "assurance_level": 2}
            audit_event_record(
                action=AuditAction.SIGN_IN,
                actor=actor_for(user),
                detail={"second_factor": "totp", "enrolled": enrolling},
                context=context_for(request),
            )
            return redirect((pending or {}).get("next") or settings.LOGIN_REDIRECT_URL)
        audit_event_record(
            action=AuditAction.SIGN_IN_FAILED,
            actor=AuditActor.anonymous(user.get_username()),
            outcome=AuditOutcome.DENIED,
            detail={"second_factor": "totp", "reason": "wrong-code"},
            context=context_for(request),
        )
        error = "The code is not right, or it has expired. Enter the code your app shows now."
    context = {
        "enrolling": enrolling,
        "key": b32encode(device.bin_key).decode() if enrolling else "",
        "config_url": device.config_url if enrolling else "",
        "error": error,
    }
    return render(request, "registration/sign_in_code.html", context, status=400 if error else 200)


class SignOutView(auth_views.LogoutView):
    """Sign out (POST), audited while the user is still known."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        signed_in = request.session.get(SIGN_IN) or {}
        if request.user.is_authenticated:
            audit_event_record(
                action=AuditAction.SIGN_OUT,
                actor=actor_for(request.user),
                detail={"via": signed_in.get("via", "password")},
                context=context_for(request),
            )
            api_tokens_revoke_for(
                user=request.user, reason="signed-out",
                session_key=request.session.session_key or "", context=context_for(request),
            )  # fmt: skip
        response = super().post(request, *args, **kwargs)
        config = provider_config() if signed_in.get("via") == "oidc" else None
        if config is not None:
            # RP-initiated logout: this session has ended; now end the provider's too.
            url = end_session_url(
                config, id_token=str(signed_in.get("id_token", "")),
                post_logout_redirect_uri=request.build_absolute_uri(settings.LOGIN_URL),
            )  # fmt: skip
            if url:
                return redirect(url)
        return response


def sign_in_locked_out(
    request: HttpRequest, original_response: HttpResponse | None, credentials: Any
) -> HttpResponse:
    """django-axes' lockout page: the same for every username (AXES_LOCKOUT_CALLABLE).

    The failed attempt itself is audited by SignInView.form_invalid.
    """
    form = AuthenticationForm(request)
    context = {"form": form, "locked_out": True, "minutes": round(settings.AXES_COOLOFF_TIME * 60)}
    return render(request, "registration/login.html", context, status=429)


@login_required
@require_GET
@never_cache
def session_status(request: HttpRequest) -> JsonResponse:
    """Renew the session (the "stay signed in" button) and say how long it now lasts."""
    session_renew(session=request.session, force=True)
    return JsonResponse({"idle_seconds": settings.SESSION_COOKIE_AGE})


@require_POST
def session_timed_out(request: HttpRequest) -> HttpResponse:
    """Where the idle-timeout script posts an idle page: sign out, then the sign-in page.

    A POST with the page's CSRF token, so another site cannot end a session
    with a link or an image.
    """
    if request.user.is_authenticated:
        audit_event_record(
            action=AuditAction.SIGN_OUT,
            actor=actor_for(request.user),
            detail={"idle_timeout": True},
            context=context_for(request),
        )
        api_tokens_revoke_for(
            user=request.user, reason="session-ended",
            session_key=request.session.session_key or "", context=context_for(request),
        )  # fmt: skip
        logout(request)
    return redirect(f"{settings.LOGIN_URL}?timeout=1")


# ------------------------------------------------------------------ home and search


def _home_context(user: User, **extra: Any) -> dict[str, Any]:
    governance = governance_viewer_for(user)
    staff_view = governance.in_scope("staff") if governance and governance.switchable else None
    return {
        "governance": governance,
        "unreviewed": audit_unreviewed_count(viewer=governance) if governance else 0,
        "unreviewed_staff": audit_unreviewed_count(viewer=staff_view) if staff_view else 0,
        "can_manage_optouts": optout_practice_for(user) is not None,
        "can_record_objections": optout_objections_office_for(user) is not None,
        "can_decide_parked": data_quality_scope_for(user) is not None,
        "can_watch_feeds": feed_operator_for(user) is not None,
        "can_search": viewer_may_search(user),
        "cap": SEARCH_RESULT_CAP,
        **extra,
    }


@login_required
@require_GET
def home_page(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html", _home_context(cast(User, request.user)))


def _birth_date(post: Any) -> tuple[datetime.date | None, str]:
    day, month, year = (post.get(k, "").strip()[:4] for k in ("dob_day", "dob_month", "dob_year"))
    if not (day and month and year):
        return None, "Enter the date of birth, including a day, month and year"
    try:
        born = datetime.date(int(year), int(month), int(day))
    except ValueError:
        return None, "Date of birth must be a real date"
    if born > datetime.date.today() or born.year < 1880:
        return None, "Date of birth must be in the past"
    return born, ""


@login_required
@require_http_methods(["POST"])
@never_cache
def patient_search_page(request: HttpRequest) -> HttpResponse:
    """Search by NHS number, or by family name and date of birth (POST: nothing in URLs)."""
    user = cast(User, request.user)
    if not viewer_may_search(user):
        raise PermissionDenied("Finding a person needs a clinical or care role.")
    if request.POST.get("by") == "demographics":
        return _search_demographics(request, user)
    raw = request.POST.get("nhs_number", "")[:20]
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) != 10 or any(ch not in "0123456789 -" for ch in raw.strip()):
        context = _home_context(user, search_error="Enter a 10-digit NHS number", nhs_number=raw)
        return render(request, "home.html", context, status=400)
    patient = patient_search(viewer=user, nhs_number=raw, context=context_for(request))
    people = [patient] if patient else []
    launch_searched(request, [str(p.public_id) for p in people])
    return render(request, "search_result.html", _result_context(people, too_many=False))


def _search_demographics(request: HttpRequest, user: User) -> HttpResponse:
    family = request.POST.get("family_name", "").strip()[:100]
    postcode = request.POST.get("postcode", "").strip()[:10]
    gender = request.POST.get("gender", "")
    born, date_error = _birth_date(request.POST)
    errors = {}
    if not family:
        errors["family_name"] = "Enter the family name"
    if date_error:
        errors["dob"] = date_error
    if gender not in ("", "female", "male", "other", "unknown"):
        errors["gender"] = "Choose a sex from the list"
    if errors or born is None:
        context = _home_context(user, demo_errors=errors, form=request.POST, tab="demographics")
        return render(request, "home.html", context, status=400)
    result = patient_search_by_demographics(
        viewer=user,
        family_name=family,
        birth_date=born,
        postcode=postcode,
        gender=gender,
        context=context_for(request),
    )
    launch_searched(request, [str(p.public_id) for p in result.patients])
    return render(
        request, "search_result.html", _result_context(result.patients, too_many=result.too_many)
    )


def _result_context(people: list[Any], *, too_many: bool) -> dict[str, Any]:
    practices = {
        o.ods_code: o
        for o in Organisation.objects.filter(ods_code__in=[p.registered_gp_ods for p in people])
    }
    return {
        "people": [(p, practices.get(p.registered_gp_ods)) for p in people],
        "too_many": too_many,
        "cap": SEARCH_RESULT_CAP,
    }


# ------------------------------------------------------------------ access basis


def _not_found(request: HttpRequest) -> HttpResponse:
    return render(request, "sharedrecord/record_not_found.html", status=404)


def session_assurance_level(request: HttpRequest) -> int:
    """How strongly this session signed in (1: a password; single sign-on: the acr's level)."""
    signed_in = request.session.get(SIGN_IN) or {}
    level = signed_in.get("assurance_level", 1)
    return level if isinstance(level, int) else 0


class AssuranceTooLow(PermissionDenied):
    """The session's sign-in is weaker than RECORD_MIN_AAL: it may search, not read."""


def _assured(request: HttpRequest) -> None:
    if not assurance_may_read(session_assurance_level(request)):
        raise AssuranceTooLow(
            "Reading a record needs a stronger sign-in (a smartcard or equivalent) than the "
            "one you used. You can still find a person. Sign out and sign in again with your "
            "smartcard to read their record."
        )


def _reader(request: HttpRequest) -> tuple[User, str]:
    """The signed-in reader and their session key; other roles are refused here."""
    user = cast(User, request.user)
    if not viewer_may_search(user):
        raise PermissionDenied("Reading records needs a clinical or care role.")
    _assured(request)
    return user, request.session.session_key or ""


def _basis_choice(
    request: HttpRequest, user: User, session_key: str, patient_id: UUID
) -> BasisChoice | None:
    try:
        return access_basis_options(
            viewer=user, patient_id=str(patient_id), session_key=session_key,
            context=context_for(request),
        )  # fmt: skip
    except PatientNotFound:
        return None


@login_required
@require_http_methods(["GET", "POST"])
@never_cache
def access_basis_page(request: HttpRequest, patient_id: UUID) -> HttpResponseBase:
    """Before any clinical data: the relationship the feeds show, and the viewer's basis."""
    user, session_key = _reader(request)
    pinned = launch_pinned_elsewhere(request, patient_id)
    if pinned is not None:
        return pinned
    choice = _basis_choice(request, user, session_key, patient_id)
    if choice is None:
        return _not_found(request)
    errors: dict[str, str] = {}
    if request.method == "POST":
        kind = basis_kind_routine()
        if request.POST.get("confirm") != "yes":
            errors["confirm"] = (
                "Confirm that you are directly involved in this person's care"
                if kind == BasisKind.DIRECT_CARE
                else "Confirm that the person has given permission now"
            )
        else:
            try:
                access_basis_record(
                    viewer=user, patient_id=str(patient_id), session_key=session_key, kind=kind,
                    claimed_relationship=request.POST.get("claimed_relationship", ""),
                    context=context_for(request),
                )  # fmt: skip
                return redirect("record", patient_id=patient_id)
            except ValidationError as invalid:
                errors = {k: v[0] for k, v in invalid.message_dict.items()}
    context = {
        "choice": choice,
        "patient": choice.patient,
        "errors": errors,
        "claimed_relationship": request.POST.get("claimed_relationship", ""),
    }
    return render(request, "sharedrecord/access_basis.html", context, status=400 if errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
@never_cache
def break_glass_page(request: HttpRequest, patient_id: UUID) -> HttpResponseBase:
    """Emergency access when consent cannot be had: coded reason, words, time-limited."""
    user, session_key = _reader(request)
    pinned = launch_pinned_elsewhere(request, patient_id)
    if pinned is not None:
        return pinned
    choice = _basis_choice(request, user, session_key, patient_id)
    if choice is None:
        return _not_found(request)
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            access_basis_record(
                viewer=user, patient_id=str(patient_id), session_key=session_key,
                kind=BasisKind.BREAK_GLASS, reason_code=request.POST.get("reason_code", ""),
                reason_text=request.POST.get("reason_text", ""), context=context_for(request),
            )  # fmt: skip
            return redirect("record", patient_id=patient_id)
        except ValidationError as invalid:
            errors = {k: v[0] for k, v in invalid.message_dict.items()}
    context = {
        "patient": choice.patient,
        "errors": errors,
        "reasons": OverrideReason.choices,
        "hours": settings.BREAK_GLASS_HOURS,
        "form": request.POST,
    }
    return render(request, "sharedrecord/break_glass.html", context, status=400 if errors else 200)


# ------------------------------------------------------------------ the record (GET only)


def _page_number(request: HttpRequest) -> int | None:
    """The `page` a section was asked for (1 if none); None if it is not a page number."""
    raw = request.GET.get("page", "1")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or int(raw) < 1:
        return None  # "²" is a digit to Python, not a page number
    return int(raw)


def _result_filters(request: HttpRequest) -> ResultFilters | None:
    """The results page's filters (test code, from, to); None if a date is not a date."""
    code = request.GET.get("test", "").strip()[:64]
    dates: list[datetime.date | None] = []
    for name in ("from", "to"):
        raw = request.GET.get(name, "").strip()
        if not raw:
            dates.append(None)
            continue
        try:
            dates.append(datetime.date.fromisoformat(raw))
        except ValueError:
            return None
    return ResultFilters(code, dates[0], dates[1])


def _record_response(
    request: HttpRequest, patient_id: UUID, section: str | None
) -> HttpResponseBase:
    user = cast(User, request.user)
    if not viewer_may_search(user):
        raise PermissionDenied("Reading records needs a clinical or care role.")
    _assured(request)
    pinned = launch_pinned_elsewhere(request, patient_id)
    if pinned is not None:
        return pinned
    page = _page_number(request) if section else 1
    filters = _result_filters(request) if section == RecordSection.RESULTS else None
    if page is None or (section == RecordSection.RESULTS and filters is None):
        missing = {"patient_id": patient_id, "section": section, "bad_filter": page is not None}
        return render(request, "sharedrecord/no_such_page.html", missing, status=400)
    try:
        record = record_view(
            viewer=user, patient_id=str(patient_id), section=section, page=page,
            session_key=request.session.session_key or "", context=context_for(request),
            filters=filters,
        )  # fmt: skip
    except PatientNotFound:
        return _not_found(request)
    except AccessBasisRequired:
        return redirect("access-basis", patient_id=patient_id)
    except SectionPageNotFound:
        missing = {"patient_id": patient_id, "section": section}
        return render(request, "sharedrecord/no_such_page.html", missing, status=404)
    except SectionNotAvailable as denied:
        context = {"message": denied.message, "patient_id": patient_id}
        return render(request, "sharedrecord/section_not_available.html", context, status=403)
    if request.session.get(SESSION_RECORD_OPEN) != str(record.patient.public_id):
        request.session[SESSION_RECORD_OPEN] = str(record.patient.public_id)  # a session write
    # Issue 25: on the summary, the pull sources are asked live (sharedrecord/live.py).
    live = None
    if section is None:
        live = live_record_pull(
            viewer=user, patient=record.patient, policy_of=lambda: record.policy,
            purpose="ETREAT" if record.policy.break_glass else "TREAT",
            reason_code=record.basis.reason_code, reason_text=record.basis.reason_text,
            via="record-page", context=context_for(request),
        )  # fmt: skip
    context = {
        "record": record,
        "patient": record.patient,
        "live": live,
        "sections": [
            (value, label)
            for value, label in RecordSection.choices
            if value in record.policy.sections
        ],
        "section_label": RecordSection(section).label if section else "Summary",
        "date_label": DATE_LABELS.get(section or "", "Date"),
        "filter_query": "".join(
            f"{k}={quote(v)}&amp;" for k in ("test", "from", "to") if (v := request.GET.get(k, ""))
        ),
        "registered_gp": record.registered_gp,
        "banner": record.banner,
        "notices": record_notices(
            patient_id=str(record.patient.public_id), launch=request.session.get("launch"),
            sources=record.sources, live=live,
        ),
    }  # fmt: skip
    template = (
        "sharedrecord/record_summary.html"
        if section is None
        else "sharedrecord/record_section.html"
    )
    return render(request, template, context)


@login_required
@require_GET
@never_cache
def record_page(request: HttpRequest, patient_id: UUID) -> HttpResponseBase:
    return _record_response(request, patient_id, None)


@login_required
@require_GET
@never_cache
def record_section_page(request: HttpRequest, patient_id: UUID, section: str) -> HttpResponseBase:
    if section not in RecordSection.values:
        return _not_found(request)
    return _record_response(request, patient_id, section)


def _timeline_filters(request: HttpRequest) -> TimelineFilters | None:
    """The timeline's filters from the query string; None if a date is not a date."""
    dates: list[datetime.date | None] = []
    for name in ("from", "to"):
        raw = request.GET.get(name, "").strip()
        try:
            dates.append(datetime.date.fromisoformat(raw) if raw else None)
        except ValueError:
            return None
    setting = request.GET.get("setting", "").strip()
    kind = request.GET.get("kind", "").strip()
    return TimelineFilters(
        date_from=dates[0],
        date_to=dates[1],
        organisation=request.GET.get("organisation", "").strip().upper()[:12],
        setting=setting if setting in OrganisationKind.values else "",
        kind=kind if kind in RecordSection.values else "",
    )


@login_required
@require_GET
@never_cache
def record_timeline_page(request: HttpRequest, patient_id: UUID) -> HttpResponseBase:
    """Everything the viewer may see of the record, across sources, newest first, filtered."""
    user = cast(User, request.user)
    if not viewer_may_search(user):
        raise PermissionDenied("Reading records needs a clinical or care role.")
    page = _page_number(request)
    filters = _timeline_filters(request)
    if page is None or filters is None:
        missing = {"patient_id": patient_id, "section": "results", "bad_filter": page is not None}
        return render(request, "sharedrecord/no_such_page.html", missing, status=400)
    try:
        timeline = record_timeline(
            viewer=user, patient_id=str(patient_id), filters=filters, page=page,
            session_key=request.session.session_key or "", context=context_for(request),
        )  # fmt: skip
    except PatientNotFound:
        return _not_found(request)
    except AccessBasisRequired:
        return redirect("access-basis", patient_id=patient_id)
    except SectionPageNotFound:
        missing = {"patient_id": patient_id, "section": "results"}
        return render(request, "sharedrecord/no_such_page.html", missing, status=404)
    record = timeline.record
    context = {
        "timeline": timeline,
        "record": record,
        "patient": record.patient,
        "registered_gp": record.registered_gp,
        "banner": record.banner,
        "notices": record_notices(
            patient_id=str(record.patient.public_id), launch=request.session.get("launch"),
            sources=record.sources,
        ),
        "sections": [
            (value, label) for value, label in RecordSection.choices
            if value in record.policy.sections
        ],
        "filter_query": "".join(
            f"{k}={quote(v)}&amp;"
            for k in ("from", "to", "organisation", "setting", "kind")
            if (v := request.GET.get(k, ""))
        ),
    }  # fmt: skip
    return render(request, "sharedrecord/timeline.html", context)


# Types a browser shows safely on its own (inside a sandbox); others download.
INLINE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg"})


@login_required
@require_GET
@never_cache
def record_document_page(
    request: HttpRequest, patient_id: UUID, entry_id: UUID
) -> HttpResponseBase:
    """Open a document's attachment: text and sanitised HTML in the page, PDF on its own."""
    user = cast(User, request.user)
    if not viewer_may_search(user):
        raise PermissionDenied("Reading records needs a clinical or care role.")
    _assured(request)
    pinned = launch_pinned_elsewhere(request, patient_id)
    if pinned is not None:
        return pinned
    try:
        shown = document_view(
            viewer=user, patient_id=str(patient_id), entry_id=str(entry_id),
            session_key=request.session.session_key or "", context=context_for(request),
        )  # fmt: skip
    except PatientNotFound:
        return _not_found(request)
    except AccessBasisRequired:
        return redirect("access-basis", patient_id=patient_id)
    attachment = shown.attachment
    if attachment and attachment.data is not None and request.GET.get("raw") == "1":
        response = HttpResponse(attachment.data, content_type=attachment.content_type)
        disposition = "inline" if attachment.content_type in INLINE_TYPES else "attachment"
        response["Content-Disposition"] = f'{disposition}; filename="document"'
        response["Content-Security-Policy"] = "sandbox; default-src 'none'; object-src 'self'"
        return response
    kind, body = document_text(attachment) if attachment else ("", "")
    context = {
        "patient": shown.patient,
        "registered_gp": shown.registered_gp,
        "banner": shown.banner,
        "notices": record_notices(
            patient_id=str(shown.patient.public_id), launch=request.session.get("launch")
        ),
        "entry": shown.entry,
        "record": shown,  # its basis and policy: what the banner says it is viewed under
        "attachment": attachment,
        "kind": kind,
        "body": body,
    }
    return render(request, "sharedrecord/document.html", context)


# ------------------------------------------------------------------ what each role sees


def _role_grid() -> list[tuple[str, list[tuple[str, list[str], list[str]]]]]:
    """Per role that reads records: (where, the parts it sees, the parts it does not)."""
    table = policy_table()
    grid = []
    for role, role_label in StaffRole.choices:
        if not role_may_read_records(role):
            continue
        groups: dict[frozenset[str], list[str]] = {}
        for kind, kind_label in OrganisationKind.choices:
            groups.setdefault(table.sections_for(role, kind), []).append(kind_label)
        rows = [
            (
                "Any organisation"
                if len(kinds) == len(OrganisationKind.choices)
                else ", ".join(kinds),
                [label for value, label in RecordSection.choices if value in sections],
                [label for value, label in RecordSection.choices if value not in sections],
            )
            for sections, kinds in groups.items()
        ]
        grid.append((str(role_label), rows))
    return grid


@require_GET
def residents_page(request: HttpRequest) -> HttpResponse:
    """For residents, no sign-in: what the record is, who takes part, who sees what, choices.

    Built from the agreements in force today and the access policy as
    configured, so it cannot drift from what the platform does. Shows no
    personal data.
    """
    taking_part = Organisation.objects.with_active_agreement().exclude(
        kind=OrganisationKind.REGISTRATION_AUTHORITY
    )
    by_kind: dict[str, list[str]] = {}
    for organisation in taking_part.order_by("kind", "name"):
        by_kind.setdefault(organisation.get_kind_display(), []).append(organisation.name)
    programme = Organisation.objects.filter(ods_code__in=settings.GOVERNANCE_ODS_CODES).first()
    table = policy_table()
    context = {
        "by_kind": sorted(by_kind.items()),
        "grid": _role_grid(),
        "categories": [c.label for c in table.sensitivity.categories],
        "programme": programme,
        "consent_model": settings.CONSENT_MODEL,
    }
    return render(request, "sharedrecord/residents.html", context)


@login_required
@require_GET
def roles_help_page(request: HttpRequest) -> HttpResponse:
    """The access policy table, as configured, for staff and governance to read."""
    table = policy_table()
    grid = _role_grid()
    sections = dict(RecordSection.choices)
    section_fields = [
        (sections[section], sorted(f.replace(".", " ") for f in fields))
        for section, fields in table.section_fields
    ]
    context = {
        "grid": grid,
        "rules": table.sensitivity,
        "categories": [c.label for c in table.sensitivity.categories],
        "section_fields": section_fields,
        "other_roles": [
            label for value, label in StaffRole.choices if not role_may_read_records(value)
        ],
        "consent_model": settings.CONSENT_MODEL,
        "basis_hours": settings.ACCESS_BASIS_HOURS,
        "break_glass_hours": settings.BREAK_GLASS_HOURS,
        "relationship_days": settings.RELATIONSHIP_DAYS,
    }
    return render(request, "sharedrecord/roles.html", context)
