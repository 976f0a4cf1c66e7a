"""What the sources asked live answered for one record view: shown, never stored.

The asking itself (HTTP, OAuth2, parsing each answer as a feed entry, the
opt-out check, the audit events) is ingestion's (ingestion/pulling.py);
sharedrecord may not import ingestion, so ingestion registers the function
at start-up (live_puller_register) and the pages and the read API call it
through live_record_pull.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from audit.trail import AuditContext
from sharedrecord.access import ViewPolicy
from sharedrecord.models import Patient, User

AnswerKind = Literal["answered", "not-found", "ambiguous", "timeout", "error"]


@dataclass(frozen=True)
class LiveItem:
    """One item a source answered with, scoped and redacted for this viewer."""

    resource_type: str
    source_id: str
    section: str
    display: str
    status: str
    effective_at: datetime.datetime | None
    sensitive: bool
    resource: dict[str, Any]


@dataclass(frozen=True)
class LiveAnswer:
    """One source's answer (or its silence)."""

    source_name: str
    source_ods: str
    base_url: str
    kind: AnswerKind
    retrieved_at: datetime.datetime
    items: tuple[LiveItem, ...] = ()
    withheld: int = 0

    @property
    def answered(self) -> bool:
        return self.kind in ("answered", "not-found")


@dataclass(frozen=True)
class LivePull:
    """Every source's answer for one view, in source order."""

    answers: tuple[LiveAnswer, ...] = ()
    opted_out: bool = False
    asked: bool = field(default=True)

    @property
    def unanswered(self) -> list[LiveAnswer]:
        return [a for a in self.answers if not a.answered]

    @property
    def withheld(self) -> int:
        return sum(a.withheld for a in self.answers)


class LivePuller(Protocol):
    def __call__(
        self,
        *,
        viewer: User,
        patient: Patient,
        policy_of: Callable[[], ViewPolicy],
        purpose: str,
        reason_code: str,
        reason_text: str,
        via: str,
        context: AuditContext | None,
    ) -> LivePull: ...


_pullers: list[LivePuller] = []


def live_puller_register(puller: LivePuller) -> None:
    """Ingestion hands over the function that asks the sources (once, at start-up)."""
    if puller not in _pullers:
        _pullers[:] = [puller]


def live_record_pull(
    *,
    viewer: User,
    patient: Patient,
    policy_of: Callable[[], ViewPolicy],
    purpose: str,
    reason_code: str = "",
    reason_text: str = "",
    via: str = "page",
    context: AuditContext | None = None,
) -> LivePull:
    """Ask every pull source for this person now (after the basis); audited by the puller.

    `policy_of` gives the viewer's policy; it is called only when there is a
    source to ask. Without a registered puller (no ingestion app) nothing is
    asked.
    """
    if not _pullers:
        return LivePull(asked=False)
    return _pullers[0](
        viewer=viewer, patient=patient, policy_of=policy_of, purpose=purpose,
        reason_code=reason_code, reason_text=reason_text, via=via, context=context,
    )  # fmt: skip
