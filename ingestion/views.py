"""Pages for the programme's feed operators: feed health, and replaying failed messages.

They show systems, times, counts and reason codes, never a message's content
or a person, so they write no audit event; a replay is audited by its service.
"""

from __future__ import annotations

from typing import cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from ingestion.health import feed_health
from ingestion.models import FeedMessage, MessageStatus
from ingestion.recovery import feed_message_replay
from sharedrecord.access import feed_operator_for
from sharedrecord.auditing import actor_for
from sharedrecord.models import User


def _operator(request: HttpRequest) -> User:
    if feed_operator_for(request.user) is None:
        raise PermissionDenied("Only the programme's feed operators see feed health.")
    return cast(User, request.user)


@login_required
@require_http_methods(["GET"])
def feed_health_page(request: HttpRequest) -> HttpResponse:
    """Each connected system: last message, the day's rate, rejects, parks and failures."""
    _operator(request)
    systems = feed_health()
    late = [system for system in systems if system.late]
    failures = [(system, failure) for system in systems for failure in system.failures]
    context = {"systems": systems, "late": late, "failures": failures}
    return render(request, "ingestion/feed_health.html", context)


@login_required
@require_http_methods(["POST"])
def feed_replay_page(request: HttpRequest, message_id: str) -> HttpResponse:
    """Queue a failed message again (audited), then go back to feed health."""
    operator = _operator(request)
    message = (
        FeedMessage.objects.select_related("organisation")
        .filter(public_id=message_id, status=MessageStatus.FAILED)
        .first()
    )
    if message is None:
        raise Http404("No failed message with that id.")
    if feed_message_replay(message=message, actor=actor_for(operator)):
        messages.success(request, f"Message {message.public_id} queued again.")
    return redirect("operations:feeds")
