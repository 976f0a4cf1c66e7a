"""What one processing attempt has got to and done: its stage, receipt counts and issues."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ingestion.fhir.results import EntryIssue, ParsedEntry

RECEIPT_COUNTS = ("created", "updated", "unchanged", "deleted", "rejected", "parked", "blocked")


@dataclass
class Outcome:
    """What processing a message did: the receipt's counts and issues."""

    counts: Counter[str] = field(default_factory=Counter)
    issues: list[dict[str, Any]] = field(default_factory=list)

    def issue(self, issue: EntryIssue) -> None:
        self.issues.append(
            {
                "entry": issue.index,
                "severity": issue.severity,
                "code": issue.code,
                "diagnostics": issue.message,
                "expression": list(issue.paths),
            }
        )
        if issue.severity == "error":
            self.counts["rejected"] += 1


@dataclass
class Progress:
    """Where processing has got to, so a failure can say where without quoting any data."""

    stage: str = "start"
    entries: tuple[ParsedEntry, ...] = ()

    def at(self, stage: str, entries: Iterable[ParsedEntry] = ()) -> None:
        self.stage, self.entries = stage, tuple(entries)
