"""HTTP endpoints of the project itself: liveness and readiness."""

from __future__ import annotations

from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sharedrecord.selectors import readiness_checks


class HealthzApi(APIView):
    """Liveness: the process is up and serving. Holds no data, so needs no sign-in."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadyzApi(APIView):
    """Readiness: PostgreSQL and Redis answer and migrations are applied (503 if not)."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    def get(self, request: Request) -> Response:
        checks = readiness_checks()
        ready = all(checks.values())
        return Response(
            {"status": "ready" if ready else "not-ready", "checks": checks},
            status=200 if ready else 503,
        )
