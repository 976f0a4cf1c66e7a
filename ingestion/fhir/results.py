"""What parsing a FHIR message gives: the envelope, the parsed entries and the problems.

Our own frozen dataclasses and exceptions; nothing outside ingestion/fhir/ handles
FHIR models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sharedrecord.entrydata import EntryData


class FeedRejected(Exception):
    """The whole message cannot be taken. `code` is machine-readable; paths, no values."""

    def __init__(self, code: str, message: str, *, status: int = 400, path: str = "Bundle") -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.path = code, message, status, path


@dataclass(frozen=True)
class EntryIssue:
    """One problem with one entry: its index, a reason code and the FHIR paths concerned."""

    index: int
    code: str
    message: str
    paths: tuple[str, ...] = ()
    severity: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class PatientLink:
    """How an entry names its patient: another bundle entry, a source id or an NHS number."""

    kind: Literal["bundle", "source-id", "nhs-number"]
    value: str


@dataclass(frozen=True)
class ParsedEntry:
    """One entry of a message: its index, what the record stores, and whose it is.

    `data` is exactly what the upsert takes. A DELETE request carries only the
    type and id in `data` (`deleted` is True). `patient` says how the entry
    names its person; a Patient entry carries the NHS numbers it holds.
    """

    index: int
    data: EntryData
    patient: PatientLink | None = None
    nhs_numbers: tuple[str, ...] = ()
    deleted: bool = False

    @property
    def resource_type(self) -> str:
        return self.data.resource_type

    @property
    def source_id(self) -> str:
        return self.data.source_id

    @property
    def resource(self) -> dict[str, Any]:
        return self.data.resource


@dataclass(frozen=True)
class ParsedBundle:
    bundle_id: str
    bundle_type: str
    entry_count: int
    entries: tuple[ParsedEntry, ...]
    issues: tuple[EntryIssue, ...] = field(default=())


@dataclass(frozen=True)
class Envelope:
    """What the HTTP edge needs before storing a message: identity and size."""

    bundle_id: str
    bundle_type: str
    entry_count: int


class EntryError(Exception):
    """One entry breaks a rule: a reason code and the paths concerned (caught per entry)."""

    def __init__(self, code: str, message: str, paths: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.code, self.message, self.paths = code, message, paths
