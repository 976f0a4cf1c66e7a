"""Middleware: request ids (echoed, written into audit events), no-store, static files."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from whitenoise.middleware import WhiteNoiseMiddleware

from sharedrecord.logs import log_context_bind, log_context_clear, request_logger

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestIdMiddleware:
    """Take a well-formed X-Request-ID from the caller, or make one; echo it back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        # Every log line of this request carries the id its audit events record.
        log_context_clear()
        log_context_bind(request_id=request_id)
        started = time.monotonic()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            _log_request(request, response.status_code, started)
            return response
        finally:
            log_context_clear()


def _log_request(request: HttpRequest, status: int, started: float) -> None:
    """One line a request: method, route name, status, time and who (a public id).

    The route's name, never the path or query string, and the user's public id,
    never their name: nothing in it identifies a person being cared for.
    """
    match = getattr(request, "resolver_match", None)
    user = getattr(request, "user", None)
    request_logger.info(
        "request",
        extra={
            "method": request.method,
            "route": match.view_name if match else "",
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "user": str(getattr(user, "public_id", "")) if user is not None else "",
        },
    )


class StaticFilesMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]
    """WhiteNoise, plus the design system's icons at /assets/, where its CSS expects them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        super().__init__(get_response)
        collected = settings.STATIC_ROOT / "nhsuk" / "assets"
        assets = collected if collected.is_dir() else settings.NHSUK_FRONTEND / "assets"
        if assets.is_dir():
            self.add_files(str(assets), prefix="assets/")


# Every route that can answer with personal data: no browser, proxy or shared
# cache may keep a copy (record pages, the FHIR API, opt-out lists and exports,
# governance pages and the audit API, receipts).
NO_STORE_PREFIXES = ("/record/", "/access/", "/search", "/fhir/R4/", "/api/v1/", "/optouts/",
                     "/governance/", "/admin/")  # fmt: skip


class NoStoreMiddleware:
    """Cache-Control: no-store on every answer from a route that may carry personal data."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith(NO_STORE_PREFIXES):
            add_never_cache_headers(response)
        return response
