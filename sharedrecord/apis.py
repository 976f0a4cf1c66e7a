"""HTTP endpoints of the project itself: liveness and readiness."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from sharedrecord.exceptions import DomainError
from sharedrecord.selectors import readiness_checks


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error as {"error": {"code": ..., "message": ...}} (STYLE.md section 10).

    Our DomainErrors carry their code and status; Django ValidationErrors from
    services become 400 invalid; DRF's own errors keep their status. Anything
    else is left to become a 500 that is seen.
    """
    if isinstance(exc, DomainError):
        return Response({"error": {"code": exc.code, "message": exc.message}}, status=exc.status)
    if isinstance(exc, DjangoValidationError):
        detail = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        return Response(
            {
                "error": {
                    "code": "invalid",
                    "message": "The request is not valid.",
                    "fields": detail,
                }
            },
            status=400,
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "invalid"
        message = exc.detail if isinstance(exc.detail, str) else "The request is not valid."
        body: dict[str, Any] = {"code": code, "message": str(message)}
        if not isinstance(exc.detail, str):
            body["fields"] = exc.detail
        response.data = {"error": body}
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
