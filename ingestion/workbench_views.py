"""The data quality workbench's pages: the officer's front page and one case at a time.

Only data quality officers (access.data_quality_scope_for) see them; anyone
else gets a 403 that is itself audited. The list shows no person; opening a
case is an audited read; each decision is a POST (ingestion/workbench.py).
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as Forbidden
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from audit.context import context_for
from audit.models import AuditAction, AuditOutcome
from audit.trail import audit_event_record
from ingestion.models import ParkState
from ingestion.workbench import (
    CORRECTION_REASONS,
    REJECT_REASONS,
    CaseNotFound,
    WorkbenchRefused,
    disputed_people_count,
    disputed_people_view,
    identity_merge,
    identity_operations,
    identity_undo,
    parked_case_correction_request,
    parked_case_file,
    parked_case_reject,
    parked_case_view,
    parked_cases,
    parked_digests_for,
    parked_waiting_counts,
    waiting_limit,
)
from sharedrecord.access import DataQualityScope, data_quality_scope_for
from sharedrecord.auditing import actor_for
from sharedrecord.identity import IdentityRefused
from sharedrecord.models import IdentityKind, User


def _field(request: HttpRequest, name: str, limit: int) -> str:
    """A posted field, cut to its limit, without NUL (PostgreSQL text refuses it)."""
    return request.POST.get(name, "").replace("\x00", "")[:limit]


def workbench_scope(request: HttpRequest) -> DataQualityScope:
    """The officer's scope, or a 403 that is audited (the pages and the API alike)."""
    scope = data_quality_scope_for(request.user)
    if scope is None:
        audit_event_record(
            action=AuditAction.ACCESS_DENIED,
            actor=actor_for(cast(User, request.user)),
            outcome=AuditOutcome.DENIED,
            detail={"area": "data-quality-workbench"},
            context=context_for(request),
        )
        raise Forbidden("Only data quality officers use the workbench.")
    return scope


STATES = [state for state in ParkState.values]


@login_required
@require_http_methods(["GET"])
def workbench_page(request: HttpRequest) -> HttpResponse:
    """The officer's front page: cases waiting (and overdue), oldest first; or decided ones."""
    scope = workbench_scope(request)
    state = request.GET.get("state", ParkState.PARKED)
    if state not in STATES:
        state = ParkState.PARKED
    context: dict[str, Any] = {
        "scope": scope,
        "counts": parked_waiting_counts(scope=scope),
        "limit_hours": int(waiting_limit().total_seconds() // 3600),
        "cases": parked_cases(scope=scope, state=state),
        "state": state,
        "states": ParkState.choices,
        "digests": parked_digests_for(scope=scope),
        "disputed": disputed_people_count(scope=scope),
    }
    return render(request, "ingestion/workbench/list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def workbench_case_page(request: HttpRequest, group: uuid.UUID) -> HttpResponse:
    """One case: what was sent, the candidates, why it waits; and the three decisions."""
    scope = workbench_scope(request)
    user = cast(User, request.user)
    errors: list[str] = []
    if request.method == "POST":
        decision = request.POST.get("decision", "")
        note = _field(request, "note", 500)
        try:
            if decision == "file":
                done = parked_case_file(
                    viewer=user, scope=scope, group=group, reason=note,
                    nhs_number=_field(request, "nhs_number", 20),
                    patient_id=_field(request, "candidate", 36),
                    context=context_for(request),
                )  # fmt: skip
            elif decision == "reject":
                done = parked_case_reject(
                    viewer=user, scope=scope, group=group, code=request.POST.get("code", ""),
                    note=note, context=context_for(request),
                )  # fmt: skip
            elif decision == "correct":
                done = parked_case_correction_request(
                    viewer=user, scope=scope, group=group, code=request.POST.get("code", ""),
                    note=note, context=context_for(request),
                )  # fmt: skip
            else:
                raise WorkbenchRefused("Choose a decision.", code="decision_required")
        except CaseNotFound as missing:
            raise Http404(missing.message) from missing
        except WorkbenchRefused as refused:
            errors = [refused.message]
        else:
            messages.success(
                request, f"Case decided: {ParkState(done.state).label} ({done.entries} entries)."
            )
            return redirect("workbench:list")
    try:
        view = parked_case_view(viewer=user, scope=scope, group=group, context=context_for(request))
    except CaseNotFound as missing:
        raise Http404(missing.message) from missing
    context = {
        "view": view,
        "errors": errors,
        "reject_reasons": REJECT_REASONS,
        "correction_reasons": CORRECTION_REASONS,
        "posted": request.POST if request.method == "POST" else {},
    }
    return render(request, "ingestion/workbench/case.html", context, status=400 if errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def workbench_identity_page(request: HttpRequest) -> HttpResponse:
    """Merge or link two people, and undo any merge or link (the programme's officers).

    The list of operations names NHS numbers, so showing it is an audited read.
    """
    scope = workbench_scope(request)
    user = cast(User, request.user)
    errors: list[str] = []
    try:
        if request.method == "POST":
            action = request.POST.get("action", "")
            if action in (IdentityKind.MERGE, IdentityKind.LINK):
                done = identity_merge(
                    viewer=user, scope=scope, kind=action,
                    from_nhs_number=_field(request, "from_nhs_number", 20),
                    to_nhs_number=_field(request, "to_nhs_number", 20),
                    reason=_field(request, "reason", 500), context=context_for(request),
                )  # fmt: skip
                what = "Merged" if action == IdentityKind.MERGE else "Linked"
                messages.success(request, f"{what}: {done.entries} entries moved.")
                return redirect("workbench:identity")
            if action == "undo":
                try:
                    operation_id = uuid.UUID(request.POST.get("operation", ""))
                except ValueError as bad:
                    raise Http404("No such identity operation.") from bad
                identity_undo(
                    viewer=user, scope=scope, operation_id=operation_id,
                    context=context_for(request),
                )  # fmt: skip
                messages.success(request, "Undone: everything it moved is back.")
                return redirect("workbench:identity")
            errors = ["Choose merge, link or undo."]
        operations = identity_operations(scope=scope)
    except CaseNotFound as missing:
        raise Http404(missing.message) from missing
    except WorkbenchRefused as refused:
        if refused.code == "programme_only":
            raise Forbidden(refused.message) from refused
        errors = [refused.message]
        operations = identity_operations(scope=scope)
    except IdentityRefused as refused:
        errors = [refused.message]
        operations = identity_operations(scope=scope)
    audit_event_record(
        action=AuditAction.MATCH_QUEUE_VIEW,
        actor=actor_for(user),
        detail={
            "list": "identity-operations",
            "operations": [str(o.public_id) for o in operations],
        },
        context=context_for(request),
    )
    context = {"operations": operations, "errors": errors, "posted": request.POST}
    return render(
        request, "ingestion/workbench/identity.html", context, status=400 if errors else 200
    )


@login_required
@require_http_methods(["GET"])
def workbench_disputes_page(request: HttpRequest) -> HttpResponse:
    """People whose sources disagree about their demographics (each shown is audited)."""
    scope = workbench_scope(request)
    people = disputed_people_view(
        viewer=cast(User, request.user), scope=scope, context=context_for(request)
    )
    return render(request, "ingestion/workbench/disputes.html", {"people": people, "scope": scope})
