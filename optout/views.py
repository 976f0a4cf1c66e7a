"""Pages for GP practice staff (record opt-outs and opt-ins, list, search and history) and
for the programme's objections officers (record objections taken by phone or e-mail).

Every page a practice sees is computed from its own entries only.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as Forbidden
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from audit.context import context_for
from optout.models import RECEIVED_ROUTES, OptOut, OptOutRoute
from optout.services import (
    objections_office_of,
    optout_check,
    optout_denied_audit,
    optout_objection_check,
    optout_objection_register,
    optout_register,
    optout_withdraw,
    practice_of,
)
from optout.viewing import OptOutShown, optout_entry_view, optout_list_view
from sharedrecord.exceptions import PermissionDenied
from sharedrecord.matching import nhs_number_is_valid, nhs_number_normalise
from sharedrecord.models import Organisation, User

PAGE = 50


def _practice(request: HttpRequest, action: str) -> Organisation:
    user = cast(User, request.user)
    try:
        return practice_of(user)
    except PermissionDenied as denied:
        optout_denied_audit(user=user, action=action, context=context_for(request))
        raise Forbidden(denied.message) from denied


def _office(request: HttpRequest, action: str) -> Organisation:
    user = cast(User, request.user)
    try:
        return objections_office_of(user)
    except PermissionDenied as denied:
        optout_denied_audit(user=user, action=action, context=context_for(request))
        raise Forbidden(denied.message) from denied


def _entry_shown(request: HttpRequest, practice: Organisation, optout_id: str) -> OptOutShown:
    shown = optout_entry_view(
        viewer=cast(User, request.user), practice=practice, optout_id=optout_id,
        context=context_for(request),
    )  # fmt: skip
    if shown is None:
        raise Http404("No such opt-out entry for your practice.")
    return shown


def _spaced(number: str) -> str:
    return f"{number[:3]} {number[3:6]} {number[6:]}"


@login_required
@require_http_methods(["GET"])
def optout_list_page(request: HttpRequest) -> HttpResponse:
    practice = _practice(request, "list")
    search = request.GET.get("search", "")[:20]
    shown = optout_list_view(
        viewer=cast(User, request.user), practice=practice, search=search, page=1,
        page_size=PAGE, context=context_for(request),
    )  # fmt: skip
    context = {"practice": practice, "entries": shown.entries, "total": shown.total,
               "search": search}  # fmt: skip
    return render(request, "optout/list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def optout_record_page(request: HttpRequest) -> HttpResponse:
    """Two steps: enter the NHS number, then see who it is and what will happen, and confirm.

    The check step is an audited read (optout_check). "Change the details"
    posts the typed number and note back, so nothing typed is lost.
    """
    practice = _practice(request, "opt-out")
    user = cast(User, request.user)
    context: dict[str, Any] = {"practice": practice, "errors": [], "nhs_number": "", "note": ""}
    if request.method == "POST":
        number = nhs_number_normalise(request.POST.get("nhs_number", ""))[:20]
        note = request.POST.get("note", "")[:500]
        step = request.POST.get("step")
        context.update(nhs_number=number, note=note)
        if step == "change":
            pass
        elif not nhs_number_is_valid(number):
            context["errors"] = ["Enter a valid 10-digit NHS number"]
        elif step == "confirm":
            try:
                result = optout_register(
                    nhs_number=number,
                    practice=practice,
                    route=OptOutRoute.PRACTICE_REQUEST,
                    note=note,
                    recorded_by=user,
                    context=context_for(request),
                )
            except PermissionDenied as denied:
                optout_denied_audit(
                    user=user, action="opt-out", reason="not-registered-here",
                    context=context_for(request),
                )  # fmt: skip
                context["errors"] = [denied.message]
            except ValidationError as invalid:
                context["errors"] = invalid.messages
            else:
                messages.success(
                    request,
                    "Opt-out recorded. Any shared care record for this person has been deleted."
                    if result.changed
                    else "Your practice had already recorded this opt-out.",
                )
                return redirect("optout-pages:detail", optout_id=result.optout.public_id)
        else:
            try:
                check = optout_check(
                    nhs_number=number, practice=practice, viewer=user,
                    context=context_for(request),
                )  # fmt: skip
            except PermissionDenied as denied:
                context["errors"] = [denied.message]
            else:
                context.update(checking=True, check=check, nhs_number_display=_spaced(number))
    return render(request, "optout/record.html", context)


@login_required
@require_http_methods(["GET"])
def optout_detail_page(request: HttpRequest, optout_id: str) -> HttpResponse:
    practice = _practice(request, "view")
    shown = _entry_shown(request, practice, optout_id)
    context = {"entry": shown.entry, "history": shown.history, "holds_entry": True}
    return render(request, "optout/detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def optout_optin_page(request: HttpRequest, optout_id: str) -> HttpResponse:
    practice = _practice(request, "opt-in")
    entry = get_object_or_404(OptOut, public_id=optout_id, practice=practice)
    if request.method == "POST" and request.POST.get("step") == "confirm":
        optout_withdraw(
            nhs_number=entry.nhs_number,
            practice=practice,
            route=OptOutRoute.PRACTICE_REQUEST,
            recorded_by=cast(User, request.user),
            context=context_for(request),
        )
        messages.success(
            request,
            "Opt-in recorded. Their record fills again as services send updates.",
        )
        return redirect("optout-pages:detail", optout_id=entry.public_id)
    shown = _entry_shown(request, practice, optout_id)
    context = {"entry": shown.entry, "history": shown.history, "holds_entry": True,
               "confirm_optin": True}  # fmt: skip
    return render(request, "optout/detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def optout_objection_page(request: HttpRequest) -> HttpResponse:
    """The programme team records an objection for the person's practice, in two steps.

    As the practice's page: enter the details, see who the number is and which
    practice it will be recorded for (an audited read), then confirm. The
    programme team sees nothing of any practice's registry.
    """
    office = _office(request, "objection")
    user = cast(User, request.user)
    form = request.POST
    number = nhs_number_normalise(form.get("nhs_number", ""))[:20]
    context: dict[str, Any] = {
        "office": office,
        "errors": {},
        "nhs_number": number,
        "note": form.get("note", "")[:500],
        "practice_ods": form.get("practice", "").strip().upper()[:12],
        "received": form.get("received", ""),
    }
    step = form.get("step")
    if request.method == "GET" or step == "change":
        return render(request, "optout/objection.html", context)
    errors: dict[str, str] = {}
    if not nhs_number_is_valid(number):
        errors["nhs_number"] = "Enter a valid 10-digit NHS number"
    if context["received"] not in RECEIVED_ROUTES:
        errors["received"] = "Choose how the objection was received"
    if not errors:
        try:
            if step == "confirm":
                optout_objection_register(
                    nhs_number=number,
                    route=RECEIVED_ROUTES[context["received"]],
                    practice_ods=context["practice_ods"],
                    note=context["note"],
                    recorded_by=user,
                    context=context_for(request),
                )
            else:
                check = optout_objection_check(
                    nhs_number=number, practice_ods=context["practice_ods"], officer=user,
                    context=context_for(request),
                )  # fmt: skip
                context.update(
                    checking=True,
                    check=check,
                    practice_ods=check.practice.ods_code,
                    nhs_number_display=_spaced(number),
                )
        except ValidationError as invalid:
            errors = {field: texts[0] for field, texts in invalid.message_dict.items()}
        else:
            if step == "confirm":
                messages.success(
                    request,
                    "Objection recorded. Any shared care record for this person has been "
                    "deleted, and their practice sees the opt-out on its list.",
                )
                return redirect("optout-pages:objections")
    context["errors"] = errors
    return render(request, "optout/objection.html", context)
