"""The governance API (/api/v1/audit/): the same searches, review queue, subject access
and exports as the pages, and a read-only FHIR AuditEvent view in the IHE BALP shape.

Privacy officers only; every call that returns trail rows writes its own audit event.
An organisation's officer reads its record-holder view (`scope=holder`, the
default) or its staff's accesses (`scope=staff`); the programme's officers read
the whole trail whichever they give.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import SuspiciousOperation
from django.http import HttpResponse, HttpResponseBase, JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.balp import audit_event_as_fhir
from audit.context import context_for
from audit.forms import AuditQueryForm, ReviewForm, SubjectAccessForm, cursor_parse
from audit.governance import (
    GovernanceViewer,
    ReviewRefused,
    ScopeUnknown,
    access_review_record,
    audit_event_view,
    audit_export,
    audit_review_queue_view,
    audit_search,
    governance_viewer_of,
    subject_access_report,
)
from audit.models import AccessReview, AuditEvent, ReviewOutcome
from audit.outcomes import FHIR_JSON, outcome_http_response
from audit.selectors import AuditQuery, Cursor, ScopeKind
from audit.templatetags.governance import emergency, why
from audit.views import csv_response

QUERY_PARAMETERS = [
    OpenApiParameter("nhs_number", str, description="10-digit NHS number of the person"),
    OpenApiParameter("user", str, description="username of the member of staff or system"),
    OpenApiParameter("organisation", str, description="ODS code of the user's organisation"),
    OpenApiParameter("date_from", OpenApiTypes.DATE),
    OpenApiParameter("date_to", OpenApiTypes.DATE),
    OpenApiParameter("action", str),
    OpenApiParameter("outcome", str),
]
SCOPE_PARAMETER = OpenApiParameter(
    "scope", str, enum=ScopeKind.values, default=ScopeKind.HOLDER.value,
    description=(
        "Which part of the trail an organisation's privacy officer reads: holder (accesses to "
        "people registered with the organisation and to data it contributed) or staff (every "
        "access by the organisation's own staff and systems, to anyone). The programme's "
        "officers read the whole trail either way. Any other value is a 400."
    ),
)  # fmt: skip


def _viewer(request: Request) -> GovernanceViewer:
    viewer = governance_viewer_of(request.user)
    if viewer is None:
        raise exceptions.PermissionDenied("Only privacy officers may read the audit trail.")
    return viewer


def _scoped_viewer(request: Request) -> GovernanceViewer:
    """The governance viewer in the scope the request asks for (`scope`, default the first held)."""
    try:
        return _viewer(request).in_scope(request.query_params.get("scope", ""))
    except ScopeUnknown as unknown:
        raise exceptions.ValidationError({"scope": [str(unknown)]}) from unknown


def _field_errors(form: forms.Form) -> dict[str, list[str]]:
    """A form's errors by field ("non_field_errors" for the form's own), as plain messages."""
    return {
        ("non_field_errors" if field == "__all__" else field): [str(m) for m in messages]
        for field, messages in form.errors.items()
    }


def _query(request: Request) -> AuditQuery:
    form = AuditQueryForm(request.query_params)
    if not form.is_valid():
        raise exceptions.ValidationError(_field_errors(form))
    return form.query()


def _after(request: Request) -> Cursor | None:
    try:
        return cursor_parse(request.query_params.get("after", ""))
    except forms.ValidationError as bad:
        raise exceptions.ValidationError({"after": bad.messages}) from bad


class EventOutput(serializers.Serializer[AuditEvent]):
    id = serializers.IntegerField()
    occurred_at = serializers.DateTimeField()
    action = serializers.CharField()
    outcome = serializers.CharField()
    actor_type = serializers.CharField()
    actor_name = serializers.CharField()
    actor_role = serializers.CharField()
    actor_role_code = serializers.CharField()
    actor_org_ods = serializers.CharField()
    nhs_number = serializers.CharField()
    patient_gp_ods = serializers.CharField()
    source_ods = serializers.ListField(child=serializers.CharField())
    purpose = serializers.CharField()
    detail = serializers.JSONField()
    request_id = serializers.CharField()
    client_address = serializers.CharField(allow_null=True)


class ReviewInput(serializers.Serializer[Any]):
    event = serializers.IntegerField()
    outcome = serializers.ChoiceField(choices=ReviewOutcome.choices)
    note = serializers.CharField(max_length=2000)


class ReviewOutput(serializers.Serializer[AccessReview]):
    id = serializers.UUIDField(source="public_id")
    event = serializers.IntegerField(source="event_id")
    outcome = serializers.CharField()
    note = serializers.CharField()
    reviewer = serializers.CharField(source="reviewer_name")
    reviewed_at = serializers.DateTimeField()


class AuditEventListApi(APIView):
    """Search the trail, newest first, 50 a page; `next` carries on (keyset paging)."""

    @extend_schema(parameters=[*QUERY_PARAMETERS, SCOPE_PARAMETER, OpenApiParameter("after", str)],
                   responses={200: OpenApiTypes.OBJECT})  # fmt: skip
    def get(self, request: Request) -> Response:
        viewer = _scoped_viewer(request)
        query, after = _query(request), _after(request)
        page = audit_search(
            viewer=viewer, query=query, via="api", after=after, context=context_for(request)
        )
        next_url = None
        if page.next_cursor:
            params = request.query_params.copy()
            params["after"] = page.next_cursor.token()
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        rows = EventOutput(page.events, many=True).data  # type: ignore[arg-type]
        return Response({"results": rows, "next": next_url})


class AuditEventExportApi(APIView):
    """Every matching event as CSV, streamed (the export itself is audited first)."""

    @extend_schema(parameters=[*QUERY_PARAMETERS, SCOPE_PARAMETER],
                   responses={(200, "text/csv"): OpenApiTypes.STR})  # fmt: skip
    def get(self, request: Request) -> HttpResponseBase:
        viewer = _scoped_viewer(request)
        query = _query(request)
        return csv_response(audit_export(viewer=viewer, query=query, context=context_for(request)))


class ReviewQueueApi(APIView):
    """Flagged accesses awaiting a finding (GET, in one scope), and recording a finding (POST).

    A finding may be recorded on a flagged access in any scope the officer holds.
    """

    @extend_schema(parameters=[SCOPE_PARAMETER], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        events, total = audit_review_queue_view(
            viewer=_scoped_viewer(request), context=context_for(request)
        )
        return Response({"total": total, "results": EventOutput(events, many=True).data})  # type: ignore[arg-type]

    @extend_schema(request=ReviewInput, responses={201: ReviewOutput})
    def post(self, request: Request) -> Response:
        viewer = _viewer(request)
        given = ReviewInput(data=request.data)
        given.is_valid(raise_exception=True)
        form = ReviewForm(given.validated_data)
        if not form.is_valid():
            raise exceptions.ValidationError(_field_errors(form))
        try:
            review = access_review_record(
                viewer=viewer, event_id=given.validated_data["event"],
                outcome=ReviewOutcome(form.cleaned_data["outcome"]),
                note=form.cleaned_data["note"], context=context_for(request),
            )  # fmt: skip
        except ReviewRefused as refused:
            raise exceptions.ValidationError({"event": [str(refused)]}) from refused
        return Response(ReviewOutput(review).data, status=201)


class SubjectAccessApi(APIView):
    """The subject access report for one person as JSON (the page prints it)."""

    @extend_schema(parameters=[OpenApiParameter("nhs_number", str, required=True)],
                   responses={200: OpenApiTypes.OBJECT})  # fmt: skip
    def get(self, request: Request) -> Response:
        viewer = _viewer(request)
        form = SubjectAccessForm(request.query_params)
        if not form.is_valid():
            raise exceptions.ValidationError(_field_errors(form))
        report = subject_access_report(
            viewer=viewer, nhs_number=form.cleaned_data["nhs_number"],
            context=context_for(request),
        )  # fmt: skip
        rows = [
            {"when": e.occurred_at, "who": e.actor_name, "organisation": e.actor_org_ods,
             "role": e.actor_role, "role_code": e.actor_role_code, "action": e.action,
             "outcome": e.outcome, "why": why(e), "emergency": emergency(e)}
            for e in report.events
        ]  # fmt: skip
        return Response({"nhs_number": report.nhs_number, "produced_at": report.produced_at,
                         "emergency_accesses": report.emergency_count, "events": rows})  # fmt: skip


def _fhir(body: dict[str, Any], status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, content_type=FHIR_JSON)


def _outcome(status: int, code: str, text: str, parameter: str = "") -> HttpResponse:
    return outcome_http_response(status, code=code, text=text, parameter=parameter)


class FhirParamError(Exception):
    """A search parameter the AuditEvent search cannot take; the message never holds its value."""

    def __init__(self, parameter: str, message: str, code: str = "value") -> None:
        super().__init__(message)
        self.parameter, self.message, self.code = parameter, message, code


class FhirAuditApi(APIView):
    """The FHIR AuditEvent routes: every error, DRF's own included, is an OperationOutcome."""

    def handle_exception(self, exc: Exception) -> HttpResponseBase:  # type: ignore[override]
        if isinstance(exc, FhirParamError):
            return _outcome(400, exc.code, exc.message, exc.parameter)
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            # As DRF answers: 403 when the scheme (a session) has no WWW-Authenticate challenge.
            status = 401 if self.get_authenticate_header(self.request) else 403
            return _outcome(status, "login", "Sign in as a privacy officer.")
        if isinstance(exc, exceptions.PermissionDenied):
            return _outcome(403, "forbidden", "Only privacy officers may read the audit trail.")
        if isinstance(exc, exceptions.MethodNotAllowed | exceptions.NotAcceptable):
            return _outcome(exc.status_code, "not-supported", "Only GET, as FHIR JSON, is served.")
        if isinstance(exc, exceptions.APIException):
            return _outcome(exc.status_code, "processing", str(exc.detail))
        if isinstance(exc, SuspiciousOperation):
            return _outcome(400, "invalid", "The request could not be read.")
        return super().handle_exception(exc)


FHIR_QUERY_PARAMETERS = [
    OpenApiParameter("patient.identifier", str,
                     description="https://fhir.nhs.uk/Id/nhs-number|<NHS number>"),
    OpenApiParameter("agent.name", str, description="username of the member of staff or system"),
    OpenApiParameter("date", str, many=True, explode=True,
                     description="geYYYY-MM-DD (from), leYYYY-MM-DD (to) or YYYY-MM-DD (that day)"),
    OpenApiParameter("_count", int, description="read, but a page holds 50"),
    OpenApiParameter("_after", str, description="where the next page starts (from a next link)"),
]  # fmt: skip
FHIR_SEARCH_PARAMETERS = {"patient.identifier", "agent.name", "date", "scope", "_count", "_after",
                          "_format"}  # fmt: skip
# The AuditQueryForm field each FHIR parameter fills, to name the parameter in errors.
FORM_FIELDS = {"nhs_number": "patient.identifier", "user": "agent.name", "date_from": "date",
               "date_to": "date", "__all__": "date"}  # fmt: skip
PARAM_NAME = re.compile(r"_?[A-Za-z][A-Za-z\-.:]{0,63}")


def _fhir_search_fields(params: Any) -> dict[str, str]:
    """The AuditQueryForm fields of a FHIR AuditEvent search; FhirParamError if one is wrong."""
    unknown = sorted(set(params) - FHIR_SEARCH_PARAMETERS)
    if unknown:
        named = [name for name in unknown if PARAM_NAME.fullmatch(name)]
        raise FhirParamError(named[0] if named else "", "Unsupported search parameter"
                             + (f": {named[0]}." if named else "."), "not-supported")  # fmt: skip
    for name in ("patient.identifier", "agent.name", "scope", "_count", "_after"):
        if len(params.getlist(name)) > 1:
            raise FhirParamError(name, f"{name} may be given only once.")
    fields: dict[str, str] = {}
    identifier = params.get("patient.identifier", "")
    if identifier:
        system, _, value = identifier.rpartition("|")
        if system not in ("", "https://fhir.nhs.uk/Id/nhs-number"):
            raise FhirParamError("patient.identifier", "patient.identifier takes an NHS number: "
                                 "https://fhir.nhs.uk/Id/nhs-number|<NHS number>.")  # fmt: skip
        fields["nhs_number"] = value
    fields["user"] = params.get("agent.name", "")
    for value in params.getlist("date"):
        found = re.fullmatch(r"(ge|le|eq)?(.*)", value, flags=re.DOTALL)
        prefix, day = (found.group(1) or "eq", found.group(2)) if found else ("", "")
        bounds = {"ge": ["date_from"], "le": ["date_to"], "eq": ["date_from", "date_to"]}
        if prefix not in bounds:
            raise FhirParamError("date", "date takes ge, le or eq and a day (geYYYY-MM-DD).")
        for bound in bounds[prefix]:
            if bound in fields:
                raise FhirParamError("date", "date may give one start (ge) and one end (le).")
            fields[bound] = day
    count = params.get("_count", "")
    if count and not re.fullmatch(r"[0-9]{1,9}", count):
        raise FhirParamError("_count", "_count must be a whole number, like 50.")
    return fields


class FhirAuditEventSearchApi(FhirAuditApi):
    """AuditEvent search: `patient.identifier=https://fhir.nhs.uk/Id/nhs-number|<n>`,
    `agent.name`, `date=geYYYY-MM-DD` / `leYYYY-MM-DD`, `scope=holder|staff`; a searchset
    Bundle with `next` links, 50 a page (a `_count` is read, and a page holds 50)."""

    @extend_schema(operation_id="audit_fhir_auditevent_search",
                   parameters=[*FHIR_QUERY_PARAMETERS, SCOPE_PARAMETER],
                   responses={(200, FHIR_JSON): OpenApiTypes.OBJECT})  # fmt: skip
    def get(self, request: Request) -> HttpResponseBase:
        viewer = governance_viewer_of(request.user)
        if viewer is None:
            return _outcome(403, "forbidden", "Only privacy officers may read the audit trail.")
        params = request.query_params
        fields = _fhir_search_fields(params)
        try:
            viewer = viewer.in_scope(params.get("scope", ""))
        except ScopeUnknown as bad_scope:
            return _outcome(400, "value", str(bad_scope), "scope")
        form = AuditQueryForm(fields)
        if not form.is_valid():
            field, errors = next(iter(form.errors.items()))
            parameter = FORM_FIELDS.get(field, field)
            return _outcome(400, "value", f"{parameter}: {errors[0]}", parameter)
        try:
            after = cursor_parse(params.get("_after", ""))
        except forms.ValidationError as bad:
            return _outcome(400, "value", f"_after: {bad.messages[0]}", "_after")
        page = audit_search(
            viewer=viewer, query=form.query(), via="fhir", after=after,
            context=context_for(request),
        )  # fmt: skip
        base = request.build_absolute_uri(request.path)
        links = [{"relation": "self", "url": request.build_absolute_uri()}]
        if page.next_cursor:
            following = params.copy()
            following["_after"] = page.next_cursor.token()
            links.append({"relation": "next", "url": f"{base}?{following.urlencode()}"})
        return _fhir({
            "resourceType": "Bundle", "type": "searchset", "link": links,
            "entry": [{"fullUrl": f"{base}/{event.id}", "resource": audit_event_as_fhir(event),
                       "search": {"mode": "match"}} for event in page.events],
        })  # fmt: skip


class FhirAuditEventReadApi(FhirAuditApi):
    """One AuditEvent; 404 alike for absent and out of scope."""

    @extend_schema(operation_id="audit_fhir_auditevent_read",
                   responses={(200, FHIR_JSON): OpenApiTypes.OBJECT})  # fmt: skip
    def get(self, request: Request, event_id: int) -> HttpResponseBase:
        viewer = governance_viewer_of(request.user)
        if viewer is None:
            return _outcome(403, "forbidden", "Only privacy officers may read the audit trail.")
        shown = audit_event_view(viewer=viewer, event_id=event_id, context=context_for(request))
        if shown is None:
            return _outcome(404, "not-found", f"AuditEvent/{event_id} is not known.")
        return _fhir(audit_event_as_fhir(shown[0]))
