"""Feed answers as OperationOutcomes: our reason codes, their FHIR issue types, and paths.

The bodies are built by audit.outcomes, the one builder; this module maps the
feeds' own reason codes onto FHIR IssueTypes. Codes and paths, never values.
"""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response

from audit.outcomes import FHIR_JSON, operation_outcome, outcome_issue

ISSUE_SYSTEM = "https://sharedrecord.nhs.invalid/CodeSystem/feed-issue"

# Our reason codes -> FHIR IssueType.
ISSUE_TYPES = {
    "invalid-json": "structure",
    "invalid-xml": "structure",
    "xml-dtd": "security",
    "invalid-encoding": "structure",
    "not-a-bundle": "structure",
    "invalid-bundle": "structure",
    "empty-bundle": "required",
    "empty-upload": "required",
    "unsupported-bundle-type": "not-supported",
    "too-many-entries": "too-costly",
    "too-large": "too-costly",
    "unsupported-media-type": "not-supported",
    "unauthenticated": "login",
    "unavailable": "transient",
    "agreement-inactive": "forbidden",
    "idempotency-conflict": "conflict",
    "not-found": "not-found",
    "unsupported-type": "not-supported",
    "invalid-resource": "invalid",
    "invalid-id": "value",
    "empty-value": "invalid",
    "period-order": "invariant",
    "active-content": "security",
    "missing-resource": "required",
    "missing-id": "required",
    "relative-fullurl": "value",
    "duplicate-fullurl": "duplicate",
    "unsupported-delete": "not-supported",
    "unresolved-patient": "not-found",
    "unresolved-reference": "not-found",
    "processing-failed": "exception",
    "too-long": "too-long",
    "xml-text": "structure",
    "invalid-code": "code-invalid",
    "conflicting-nhs-numbers": "conflict",
    "unknown-type": "not-supported",
    "invalid-character": "value",
    "too-deep": "structure",
    "not-acceptable": "not-supported",
    "forbidden": "forbidden",
    "attempt-failed": "transient",
    "invalid-parameter": "value",
}


def issue(
    *, code: str, diagnostics: str, severity: str = "error", expression: list[str] | None = None
) -> dict[str, Any]:
    """One feed issue: our reason `code` beside the FHIR IssueType it maps to."""
    fhir_code = ISSUE_TYPES.get(code, "processing" if code.startswith("parked") else "invalid")
    return outcome_issue(
        code=fhir_code,
        text=diagnostics,
        severity=severity,
        expression=expression,
        reason=(ISSUE_SYSTEM, code),
    )


def outcome_response(
    status: int, *, code: str, diagnostics: str, expression: list[str] | None = None
) -> Response:
    body = operation_outcome([issue(code=code, diagnostics=diagnostics, expression=expression)])
    return Response(body, status=status, content_type=FHIR_JSON)
