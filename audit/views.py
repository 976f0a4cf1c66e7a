"""Governance pages: search the trail, export it, review flagged accesses, subject access.

Only privacy officers (audit.governance.governance_viewer_of); each page that
shows trail rows is an audited service call (AUDIT_QUERY, AUDIT_EXPORT,
AUDIT_REVIEW, SUBJECT_ACCESS_REPORT). An organisation's officer switches
between its record-holder view and its staff's accesses with `?scope=holder`
or `?scope=staff` (the search, its pages, its export and the review queue
carry it); the programme's officers read the whole trail and see no switch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms import Form
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from audit.context import context_for
from audit.csvstream import csv_lines
from audit.directory import names_for, subject_of
from audit.forms import AuditQueryForm, ReviewForm, SubjectAccessForm, cursor_parse
from audit.governance import (
    GovernanceViewer,
    ReviewRefused,
    ScopeUnknown,
    access_review_record,
    audit_event_view,
    audit_export,
    audit_opened_under_basis_view,
    audit_review_queue_view,
    audit_search,
    audit_unreviewed_count,
    governance_viewer_of,
    subject_access_report,
)
from audit.models import CLOSING_OUTCOMES, AuditEvent, ReviewOutcome
from audit.selectors import BASIS_ACTIONS, Cursor, GovernanceScope, ScopeKind

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


def _scoped(viewer: GovernanceViewer, request: HttpRequest, form: Form) -> GovernanceViewer:
    """The viewer in the scope the query string asks for (`scope`, default the first held).

    An unknown scope becomes an error on the form, so the page answers 400
    and searches nothing.
    """
    try:
        return viewer.in_scope(request.GET.get("scope", ""))
    except ScopeUnknown as unknown:
        form.add_error(None, str(unknown))
        return viewer


def _after(request: HttpRequest, form: Form) -> Cursor | None:
    """The page a next link asks for; a link not of ours becomes an error on the form (a 400)."""
    try:
        return cursor_parse(request.GET.get("after", ""))
    except ValidationError as bad:
        form.add_error(None, bad)
        return None


def scope_description(scope: GovernanceScope) -> str:
    """The part of the trail in use, in words (the organisation by its name)."""
    if scope.whole_trail:
        return "the whole audit trail"
    ods = scope.staff_ods or scope.holder_ods
    name = names_for([], extra_ods=[ods]).organisation(ods)
    if scope.staff_ods:
        return f"every access by staff and systems of {name}, to anyone"
    return f"accesses to people registered with {name} and to data {name} contributed"


def scope_context(
    viewer: GovernanceViewer, request: HttpRequest, page: str = "governance:events"
) -> dict[str, Any]:
    """What the pages need to show and carry the scope (nothing to switch for one scope).

    `scope_tabs`: one link per kind, to `page` with the same query in that
    scope (from its first page); `scope_choices` for the search form's
    radios; `scope_query`, the parameter that keeps the scope on links.
    """
    context: dict[str, Any] = {"scope": scope_description(viewer.scope)}
    if not viewer.switchable:
        return context
    tabs, choices = [], []
    for kind, label in ScopeKind.choices:
        params = request.GET.copy()
        params.pop("after", None)
        params["scope"] = kind
        current = viewer.scope.kind == kind
        href = f"{reverse(page)}?{params.urlencode()}"
        tabs.append({"label": label, "href": href, "current": current})
        choices.append({"value": kind, "label": label, "checked": current})
    context.update(scope_tabs=tabs, scope_choices=choices,
                   scope_query=f"scope={viewer.scope.kind}")  # fmt: skip
    return context


@never_cache
@login_required
@require_GET
def governance_home_page(request: HttpRequest) -> HttpResponse:
    viewer = _viewer(request)
    context = {
        **scope_context(viewer, request),
        "unreviewed": audit_unreviewed_count(viewer=viewer),
        "form": AuditQueryForm(),
        "sar_form": SubjectAccessForm(),
    }
    if viewer.switchable:
        staff = viewer.in_scope(ScopeKind.STAFF)
        context["staff_unreviewed"] = audit_unreviewed_count(viewer=staff)
    return render(request, "audit/home.html", context)


@never_cache
@login_required
@require_GET
def governance_events_page(request: HttpRequest) -> HttpResponse:
    viewer = _viewer(request)
    form = AuditQueryForm(request.GET)
    viewer = _scoped(viewer, request, form)
    after = _after(request, form)
    context: dict[str, Any] = {"form": form, **scope_context(viewer, request)}
    if not form.is_valid():
        return render(request, "audit/events.html", context, status=400)
    page = audit_search(
        viewer=viewer, query=form.query(), after=after, context=context_for(request)
    )
    params = request.GET.copy()
    params.pop("after", None)
    context.update(
        searched=True,
        events=page.events,
        names=names_for(page.events),
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
    viewer = _scoped(viewer, request, form)
    if not form.is_valid():
        context = {"form": form, **scope_context(viewer, request)}
        return render(request, "audit/events.html", context, status=400)
    return csv_response(audit_export(viewer=viewer, query=form.query(),
                                     context=context_for(request)))  # fmt: skip


@never_cache
@login_required
@require_GET
def governance_reviews_page(request: HttpRequest) -> HttpResponse:
    form = Form(request.GET)
    viewer = _scoped(_viewer(request), request, form)
    if form.errors:
        context = {"form": form, **scope_context(viewer, request, "governance:reviews")}
        return render(request, "audit/reviews.html", context, status=400)
    events, total = audit_review_queue_view(viewer=viewer, context=context_for(request))
    context = {"events": events, "total": total, "names": names_for(events),
               "review_buttons": True,
               **scope_context(viewer, request, "governance:reviews")}  # fmt: skip
    return render(request, "audit/reviews.html", context)


def _reviews_url(viewer: GovernanceViewer) -> str:
    """The review queue in the scope in use (the one the event was opened from)."""
    url = reverse("governance:reviews")
    return f"{url}?scope={viewer.scope.kind}" if viewer.switchable else url


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def governance_event_page(request: HttpRequest, event_id: int) -> HttpResponse:
    # The scope only orders the lookup and says where "back" leads: the event
    # is shown, and may be reviewed, if any scope held contains it.
    try:
        viewer = _viewer(request).in_scope(request.GET.get("scope", ""))
    except ScopeUnknown as unknown:
        return HttpResponseBadRequest(str(unknown))
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
            outcome = ReviewOutcome(form.cleaned_data["outcome"]).label
            messages.success(
                request, f"Finding saved: {outcome}. The access is recorded as reviewed."
            )
            return redirect(_reviews_url(viewer))
    shown = audit_event_view(viewer=viewer, event_id=event_id, context=context_for(request))
    if shown is None:
        raise Http404("No such event in your part of the trail.")
    event, reviews = shown
    closed = any(r.outcome in CLOSING_OUTCOMES for r in reviews)
    opened = audit_opened_under_basis_view(viewer=viewer, event=event, context=context_for(request))
    context = {"event": event, "reviews": reviews, "form": form, "error": error,
               "opened": opened,
               "names": names_for([event, *opened],
                                  extra_usernames=[r.reviewer_name for r in reviews]),
               "basis_event": event.action in BASIS_ACTIONS and bool(event.detail.get("basis")),
               "reviewable": event.flagged_for_review and not closed,
               "reviews_url": _reviews_url(viewer)}  # fmt: skip
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
    context = {
        "report": report,
        "scope": scope_description(viewer.scope),
        "sar_form": form,
        "names": names_for(
            report.events,
            extra_ods=[viewer.scope.holder_ods or viewer.scope.staff_ods],
            extra_usernames=[report.produced_by],
        ),
        "subject": subject_of(report.nhs_number),
    }
    return render(request, "audit/subject_access.html", context)
