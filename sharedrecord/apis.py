"""HTTP endpoints of the project itself: liveness and readiness; the REST API's error shape.

`exception_handler` is DRF's (settings REST_FRAMEWORK); `not_found`,
`bad_request` and `server_error` are for the URLconf's handler404, handler400
and handler500, so a request no route takes, or that fails outside a view,
still answers in its protocol's shape.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.views import defaults
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from audit.outcomes import outcome_http_response
from sharedrecord.exceptions import RETRY_AFTER_SECONDS, DomainError, store_unavailable
from sharedrecord.selectors import readiness_checks

UNAVAILABLE = "The record store is not answering; try again."


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error as {"error": {"code": ..., "message": ...}} (STYLE.md section 10).

    Our DomainErrors carry their code and status; Django ValidationErrors from
    services become 400 invalid; DRF's own errors keep their status; a request
    Django refuses to read (too many fields, too large) is a 400 or 413. The
    message of a field error names the field and says what is wrong with it.
    PostgreSQL not answering is a 503 with Retry-After. Anything else is left
    to become a 500 that is seen.
    """
    if isinstance(exc, DomainError):
        return Response({"error": {"code": exc.code, "message": exc.message}}, status=exc.status)
    if isinstance(exc, DjangoValidationError):
        detail = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        return Response(
            {"error": {"code": "invalid", "message": _first_problem(detail), "fields": detail}},
            status=400,
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"error": {"code": "too_large", "message": "The request body is too large."}},
            status=413,
        )
    if isinstance(exc, SuspiciousOperation):
        return Response(
            {"error": {"code": "bad_request", "message": "The request could not be read."}},
            status=400,
        )
    if store_unavailable(exc):
        unavailable = Response({"error": {"code": "unavailable", "message": UNAVAILABLE}}, 503)
        unavailable["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return unavailable
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "invalid"
        message = exc.detail if isinstance(exc.detail, str) else _first_problem(exc.detail)
        body: dict[str, Any] = {"code": code, "message": str(message)}
        if not isinstance(exc.detail, str):
            body["fields"] = exc.detail
        response.data = {"error": body}
    return response


def _first_problem(detail: Any, field: str = "") -> str:
    """The first message in a tree of field errors, after the name of its field."""
    if isinstance(detail, dict):
        for name, inner in detail.items():
            named = "" if name in ("non_field_errors", "__all__") else str(name)
            return _first_problem(inner, field or named)
    elif isinstance(detail, list | tuple):
        for inner in detail:
            return _first_problem(inner, field)
    elif isinstance(detail, str) and detail:
        return f"{field}: {detail}" if field else detail
    return "The request is not valid."


# Routes whose errors are FHIR OperationOutcomes: the read API, the feeds, the AuditEvent view.
FHIR_ROUTES = ("/fhir/", "/api/v1/feeds/", "/api/v1/audit/fhir/")


FHIR_ISSUE_FOR_STATUS = {400: "invalid", 404: "not-found", 500: "exception", 503: "transient"}


def protocol_error(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    if request.path.startswith(FHIR_ROUTES):
        fhir_code = FHIR_ISSUE_FOR_STATUS.get(status, "processing")
        return outcome_http_response(status, code=fhir_code, text=message)
    body = {"error": {"code": code, "message": message}}
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: an API address no route takes answers in its API's shape; a page, as Django's."""
    if request.path.startswith(("/api/", "/fhir/")):
        return protocol_error(request, 404, "not_found", "There is nothing at this address.")
    return defaults.page_not_found(request, exception or Exception())


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler400: a request Django refused to read (too many fields, a bad host...), likewise."""
    if request.path.startswith(("/api/", "/fhir/")):
        return protocol_error(request, 400, "bad_request", "The request could not be read.")
    return defaults.bad_request(request, exception or Exception())


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: PostgreSQL not answering is a 503 with Retry-After, in the address's shape.

    Django calls this inside its `except`, for an error anywhere (a middleware
    reading the session, a view): the error is what sys.exc_info() holds. The
    page is rendered without the request, so nothing on it reads the database.
    Any other error stays a 500, an API address's in its API's shape.
    """
    if not store_unavailable(sys.exc_info()[1] or Exception()):
        if request.path.startswith(("/api/", "/fhir/")):
            return protocol_error(request, 500, "server_error", "Something went wrong here.")
        return defaults.server_error(request)
    if request.path.startswith(("/api/", "/fhir/")):
        response = protocol_error(request, 503, "unavailable", UNAVAILABLE)
    else:
        response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class HealthzApi(APIView):
    """Liveness: the process is up and serving. Holds no data, so needs no sign-in."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadyzApi(APIView):
    """Readiness: PostgreSQL and Redis answer and migrations are applied (503 if not)."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        checks = readiness_checks()
        ready = all(checks.values())
        return Response(
            {"status": "ready" if ready else "not-ready", "checks": checks},
            status=200 if ready else 503,
        )
