"""Our domain errors. Each carries a stable `code`; messages never hold personal data."""

from __future__ import annotations

from django.db import InterfaceError, OperationalError

# How long a caller is asked to wait (Retry-After) when the record store is not answering.
RETRY_AFTER_SECONDS = 30
# What a feed sender is told then (an OperationOutcome's diagnostics, an AR's text).
NOT_KEPT = "The record store is not answering just now; nothing was kept. Send it again."


class DomainError(Exception):
    """Base of every error the platform raises on purpose."""

    code = "domain_error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidParameter(DomainError):
    """A request parameter the server cannot take: names the parameter, never its value.

    `issue` is the FHIR issue type the read API answers with (value, required,
    not-supported, too-costly).
    """

    code = "invalid_parameter"
    status = 400

    def __init__(self, parameter: str, message: str, *, issue: str = "value") -> None:
        super().__init__(message)
        self.parameter = parameter
        self.issue = issue


class PatientNotFound(DomainError):
    """Raised alike for "does not exist" and "not yours" (STYLE.md section 3)."""

    code = "patient_not_found"
    status = 404


class PermissionDenied(DomainError):
    code = "permission_denied"
    status = 403


class AccessBasisRequired(DomainError):
    """The viewer has no current basis for this person: the page asks for one first."""

    code = "access_basis_required"
    status = 403


class SectionPageNotFound(DomainError):
    """A page past a section's last: nothing is read or shown, so nothing is audited."""

    code = "section_page_not_found"
    status = 404


class SectionNotAvailable(DomainError):
    """The viewer's role does not see this section (the role table is public, so we say so)."""

    code = "section_not_available"
    status = 403


def store_unavailable(exc: BaseException) -> bool:
    """Whether an error means PostgreSQL is not answering (down, restarting, pool exhausted).

    Every door answers it with a 503 and Retry-After in its own protocol: the
    caller's request was not kept and should be sent again, which is not a defect.
    """
    return isinstance(exc, OperationalError | InterfaceError)
