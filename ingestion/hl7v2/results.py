"""What reading an HL7 v2 message gives: its header, its problems, its merges and its Bundle.

Plain frozen dataclasses (and the AR exception) shared by the parser, the ACK
and the worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Hl7Problem:
    """One thing wrong, for an ERR segment: where (segment, repeat, field) and what."""

    segment: str
    sequence: int
    field: int
    code: str  # HL7 table 0357
    message: str
    severity: str = "E"

    @property
    def location(self) -> str:
        return f"{self.segment}^{self.sequence}^{self.field}" if self.segment else ""


class Hl7Rejected(Exception):
    """A message we cannot take at all: the answer is AR and nothing is stored."""

    def __init__(self, problem: Hl7Problem, header: Hl7Header | None = None) -> None:
        super().__init__(problem.message)
        self.problem = problem
        self.header = header


@dataclass(frozen=True)
class Hl7Header:
    field_separator: str
    encoding: str
    sending_application: str
    sending_facility: str
    message_type: str
    event: str
    control_id: str
    processing_id: str
    version: str
    sent_at: str  # MSH-7 as sent


@dataclass(frozen=True)
class Merge:
    """One A40 pair: the person the sender merged away into the surviving one.

    Each side by NHS number ("" when none or invalid) and by the sender's own
    id (the Patient entry's id, "" when none was sent).
    """

    prior_nhs_number: str
    prior_patient_id: str
    survivor_nhs_number: str = ""
    survivor_patient_id: str = ""


@dataclass
class Converted:
    header: Hl7Header
    bundle: dict[str, Any]
    problems: list[Hl7Problem] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)  # A40: one per PID/MRG pair, in order
    entry_count: int = 0

    @property
    def ack_code(self) -> str:
        return "AE" if any(p.severity == "E" for p in self.problems) else "AA"
