"""Staff pages of the project itself: home and finding a person."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from sharedrecord.access import viewer_may_search
from sharedrecord.auditing import context_for
from sharedrecord.models import User
from sharedrecord.selectors import optout_practice_for
from sharedrecord.services import patient_search


@login_required
def home_page(request: HttpRequest) -> HttpResponse:
    user = cast(User, request.user)
    context = {
        "can_manage_optouts": optout_practice_for(user) is not None,
        "can_search": viewer_may_search(user),
    }
    return render(request, "home.html", context)


@login_required
@require_http_methods(["POST"])
def patient_search_page(request: HttpRequest) -> HttpResponse:
    """Search by NHS number. POST only: the number travels in the body, never in a URL."""
    user = cast(User, request.user)
    if not viewer_may_search(user):
        raise PermissionDenied("Finding a person needs a clinical or care role.")
    raw = request.POST.get("nhs_number", "")[:20]
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) != 10:
        return render(
            request,
            "home.html",
            {"can_search": True, "search_error": "Enter a 10-digit NHS number", "nhs_number": raw},
        )
    patient = patient_search(viewer=user, nhs_number=raw, context=context_for(request))
    return render(request, "search_result.html", {"patient": patient})
