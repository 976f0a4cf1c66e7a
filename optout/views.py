"""Pages for GP practice staff: record opt-outs and opt-ins, list, search and history."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as Forbidden
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from audit.models import AuditAction
from audit.services import audit_event_record
from optout.models import OptOut, OptOutRoute
from optout.selectors import optouts_for_practice
from optout.services import optout_denied_audit, optout_register, optout_withdraw, practice_of
from sharedrecord.auditing import actor_for, context_for
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


def _audit_view(request: HttpRequest, detail: dict[str, Any]) -> None:
    audit_event_record(
        action=AuditAction.OPTOUT_VIEW,
        actor=actor_for(cast(User, request.user)),
        detail=detail,
        context=context_for(request),
    )


def _spaced(number: str) -> str:
    return f"{number[:3]} {number[3:6]} {number[6:]}"


@login_required
@require_http_methods(["GET"])
def optout_list_page(request: HttpRequest) -> HttpResponse:
    practice = _practice(request, "list")
    search = request.GET.get("search", "")[:20]
    entries = optouts_for_practice(practice=practice, search=search)
    rows = list(entries[:PAGE])
    _audit_view(request, {"listed": len(rows), "search": bool(search)})
    context = {"practice": practice, "entries": rows, "total": entries.count(), "search": search}
    return render(request, "optout/list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def optout_record_page(request: HttpRequest) -> HttpResponse:
    """Two steps: enter the NHS number, then check what will happen and confirm."""
    practice = _practice(request, "opt-out")
    context: dict[str, Any] = {"practice": practice, "errors": [], "nhs_number": "", "note": ""}
    if request.method == "POST":
        number = nhs_number_normalise(request.POST.get("nhs_number", ""))[:20]
        note = request.POST.get("note", "")[:500]
        context.update(nhs_number=number, note=note)
        if not nhs_number_is_valid(number):
            context["errors"] = ["Enter a valid 10-digit NHS number"]
        elif request.POST.get("step") == "confirm":
            try:
                result = optout_register(
                    nhs_number=number,
                    practice=practice,
                    route=OptOutRoute.PRACTICE_REQUEST,
                    note=note,
                    recorded_by=cast(User, request.user),
                    context=context_for(request),
                )
            except PermissionDenied as denied:
                context["errors"] = [denied.message]
            except ValidationError as invalid:
                context["errors"] = invalid.messages
            else:
                messages.success(
                    request,
                    "Opt-out recorded. Any shared care record for this person has been deleted."
                    if result.changed
                    else "This person was already opted out.",
                )
                return redirect("optout-pages:detail", optout_id=result.optout.public_id)
        else:
            context.update(checking=True, nhs_number_display=_spaced(number))
    return render(request, "optout/record.html", context)


@login_required
@require_http_methods(["GET"])
def optout_detail_page(request: HttpRequest, optout_id: str) -> HttpResponse:
    practice = _practice(request, "view")
    entry = get_object_or_404(OptOut, public_id=optout_id, practice=practice)
    _audit_view(request, {"optout": str(entry.public_id)})
    history = entry.changes.select_related("recorded_by")
    context = {"entry": entry, "history": history, "holds_entry": True}
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
    _audit_view(request, {"optout": str(entry.public_id)})
    history = entry.changes.select_related("recorded_by")
    context = {"entry": entry, "history": history, "holds_entry": True, "confirm_optin": True}
    return render(request, "optout/detail.html", context)
