"""Staff pages of the project itself (the record pages come with the viewing issue)."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from sharedrecord.models import User
from sharedrecord.selectors import optout_practice_for


@login_required
def home_page(request: HttpRequest) -> HttpResponse:
    user = cast(User, request.user)
    return render(
        request, "home.html", {"can_manage_optouts": optout_practice_for(user) is not None}
    )
