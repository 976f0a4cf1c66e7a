"""FHIR OperationOutcome bodies, the one builder every API answers errors with.

It sits in audit, the bottom layer, only so that every app may import it (the
feeds, the FHIR read API, the AuditEvent API); it knows nothing of the trail.
Issues carry codes, paths and parameter names, never the values sent.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse

FHIR_JSON = "application/fhir+json"


def outcome_issue(
    *,
    code: str,
    text: str,
    severity: str = "error",
    expression: list[str] | None = None,
    parameter: str = "",
    reason: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """One issue: `code` is the FHIR IssueType; `text` says what is wrong in words.

    `reason` (code system, our code) puts `text` in `details` beside our own
    code, as the feeds answer; without it `text` is the `diagnostics`.
    `parameter` names an HTTP parameter the FHIR way, as the expression
    "http.<name>".
    """
    issue: dict[str, Any] = {"severity": severity, "code": code}
    if reason is not None:
        system, own_code = reason
        issue["details"] = {"coding": [{"system": system, "code": own_code}], "text": text}
    else:
        issue["diagnostics"] = text
    if parameter:
        expression = [*(expression or []), f"http.{parameter}"]
    if expression:
        issue["expression"] = expression
    return issue


def operation_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    """The OperationOutcome resource holding these issues."""
    return {"resourceType": "OperationOutcome", "issue": issues}


def outcome_http_response(
    status: int, *, code: str, text: str, parameter: str = "", severity: str = "error"
) -> HttpResponse:
    """A one-issue OperationOutcome as FHIR JSON, for views outside DRF's rendering."""
    body = operation_outcome(
        [outcome_issue(code=code, text=text, parameter=parameter, severity=severity)]
    )
    return HttpResponse(json.dumps(body), status=status, content_type=FHIR_JSON)
