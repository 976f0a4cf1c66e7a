"""Governance pages: search the trail, export it, review flagged accesses, subject access.

Only privacy officers (audit.services.governance_viewer_of); each page that
shows trail rows is an audited service call (AUDIT_QUERY, AUDIT_EXPORT,
AUDIT_REVIEW, SUBJECT_ACCESS_REPORT).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from audit.context import context_for
from audit.csvstream import csv_lines
from audit.forms import AuditQueryForm, ReviewForm, SubjectAccessForm
from audit.models import CLOSING_OUTCOMES, AuditEvent, ReviewOutcome
from audit.selectors import Cursor, GovernanceScope
from audit.services import (
    GovernanceViewer,
    ReviewRefused,
    access_review_record,
    audit_event_view,
    audit_export,
    audit_review_queue_view,
    audit_search,
    audit_unreviewed_count,
    governance_viewer_of,
    subject_access_report,
)

CSV_COLUMNS = (
    "id", "occurred_at", "action", "outcome", "actor_type", "actor_name", "actor_role",
    "actor_role_code", "actor_org_ods", "nhs_number", "patient_gp_ods", "source_ods",
    "purpose", "detail", "request_id", "client_address",
)  # fmt: skip


def _viewer(request: HttpRequest) -> GovernanceViewer:
    viewer = governance_viewer_of(request.user)
    if viewer is None:
        raise PermissionDenied("Only privacy officers may read the audit trail.")
    return viewer


def scope_description(scope: GovernanceScope) -> str:
    if scope.whole_trail:
        return "the whole audit trail"
    return (
        f"accesses to people registered with {scope.holder_ods} and to data "
        f"{scope.holder_ods} contributed"
    )


@never_cache
@login_required
@require_GET
def governance_home_page(request: HttpRequest) -> HttpResponse:
    viewer = _viewer(request)
    context = {
        "scope": scope_description(viewer.scope),
        "unreviewed": audit_unreviewed_count(viewer=viewer),
        "form": AuditQueryForm(),
        "sar_form": SubjectAccessForm(),
    }
    return render(request, "audit/home.html", context)


@never_cache
@login_required
@require_GET
def governance_events_page(request: HttpRequest) -> HttpResponse:
    viewer = _viewer(request)
    form = AuditQueryForm(request.GET)
    context: dict[str, Any] = {"form": form, "scope": scope_description(viewer.scope)}
    if not form.is_valid():
        return render(request, "audit/events.html", context, status=400)
    after = Cursor.parse(request.GET.get("after", ""))
    page = audit_search(
        viewer=viewer, query=form.query(), after=after, context=context_for(request)
    )
    params = request.GET.copy()
    params.pop("after", None)
    context.update(
        searched=True,
        events=page.events,
        base_query=params.urlencode(),
        next_after=page.next_cursor.token() if page.next_cursor else "",
        paged=after is not None,
    )
    return render(request, "audit/events.html", context)


def _csv_row(event: AuditEvent) -> list[Any]:
    row = [getattr(event, column) for column in CSV_COLUMNS]
    row[CSV_COLUMNS.index("occurred_at")] = event.occurred_at.isoformat()
    row[CSV_COLUMNS.index("source_ods")] = " ".join(event.source_ods)
    return row


def csv_response(events: Iterator[AuditEvent]) -> StreamingHttpResponse:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(
        csv_lines(CSV_COLUMNS, map(_csv_row, events)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def governance_export(request: HttpRequest) -> HttpResponseBase:
    viewer = _viewer(request)
    form = AuditQueryForm(request.GET)
    if not form.is_valid():
        context = {"form": form, "scope": scope_description(viewer.scope)}
        return render(request, "audit/events.html", context, status=400)
    return csv_response(audit_export(viewer=viewer, query=form.query(),
                                     context=context_for(request)))  # fmt: skip


@never_cache
@login_required
@require_GET
def governance_reviews_page(request: HttpRequest) -> HttpResponse:
    viewer = _viewer(request)
    events, total = audit_review_queue_view(viewer=viewer, context=context_for(request))
    context = {"events": events, "total": total, "scope": scope_description(viewer.scope)}
    return render(request, "audit/reviews.html", context)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def governance_event_page(request: HttpRequest, event_id: int) -> HttpResponse:
    viewer = _viewer(request)
    form = ReviewForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        try:
            access_review_record(
                viewer=viewer, event_id=event_id,
                outcome=ReviewOutcome(form.cleaned_data["outcome"]),
                note=form.cleaned_data["note"], context=context_for(request),
            )  # fmt: skip
        except ReviewRefused as refused:
            error = str(refused)
        else:
            return redirect("governance:reviews")
    shown = audit_event_view(viewer=viewer, event_id=event_id, context=context_for(request))
    if shown is None:
        raise Http404("No such event in your part of the trail.")
    event, reviews = shown
    closed = any(r.outcome in CLOSING_OUTCOMES for r in reviews)
    context = {"event": event, "reviews": reviews, "form": form, "error": error,
               "reviewable": bool(event.detail.get("review")) and not closed}  # fmt: skip
    status = 400 if request.method == "POST" else 200
    return render(request, "audit/event.html", context, status=status)


@never_cache
@login_required
@require_GET
def subject_access_page(request: HttpRequest) -> HttpResponse:
    viewer = _viewer(request)
    form = SubjectAccessForm(request.GET)
    if not form.is_valid():
        context = {"sar_form": form, "scope": scope_description(viewer.scope)}
        return render(request, "audit/subject_access.html", context, status=400)
    report = subject_access_report(
        viewer=viewer, nhs_number=form.cleaned_data["nhs_number"], context=context_for(request)
    )
    context = {"report": report, "scope": scope_description(viewer.scope), "sar_form": form}
    return render(request, "audit/subject_access.html", context)
