"""What a source says about one entry, as the write path takes it: plain data, no ORM.

The feed parsers (ingestion/fhir/, ingestion/hl7v2/) build it and stay pure
by importing only this module; sharedrecord.entries stores it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EntryData:
    """One validated source resource and its typed columns (from ingestion's parser)."""

    resource_type: str
    source_id: str
    section: str
    resource: dict[str, Any]
    content_hash: str
    version_id: str = ""
    source_updated_at: datetime.datetime | None = None
    effective_at: datetime.datetime | None = None
    status: str = ""
    code_system: str = ""
    code: str = ""
    code_display: str = ""
    sensitivity: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
