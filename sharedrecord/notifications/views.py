"""The in-app notifications page (HTTP only: read the filters, call notices_view, render)."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from audit.context import context_for
from sharedrecord.models import User
from sharedrecord.notifications.inbox import notices_view
from sharedrecord.notifications.models import EventKind


@login_required
@require_GET
@never_cache
def notifications_page(request: HttpRequest) -> HttpResponse:
    """Your patients: what changed since you last looked (filter by kind, or only new)."""
    listed = notices_view(
        viewer=cast(User, request.user),
        kind=request.GET.get("kind", "")[:20],
        only_new=request.GET.get("new") == "1",
        context=context_for(request),
    )
    return render(
        request,
        "notifications/list.html",
        {"listed": listed, "kinds": EventKind.choices},
    )
