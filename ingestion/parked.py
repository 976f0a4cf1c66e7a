"""A parked entry's typed columns, kept beside its resource so filing stores what a feed would.

EntryData is what the upsert takes; the queue keeps its columns as JSON
(dates as ISO text) and rebuilds it when a data quality officer files the
entry (ingestion/workbench.py).
"""

from __future__ import annotations

import datetime
from typing import Any

from sharedrecord.entrydata import EntryData

_DATES = ("source_updated_at", "effective_at")
_TEXTS = ("section", "content_hash", "version_id", "status", "code_system", "code", "code_display")
_LISTS = ("sensitivity", "codes")


def entry_data_columns(data: EntryData) -> dict[str, Any]:
    """The parsed entry's columns (not its resource, which the queue holds beside them)."""
    columns: dict[str, Any] = {name: getattr(data, name) for name in _TEXTS}
    columns.update({name: list(getattr(data, name)) for name in _LISTS})
    for name in _DATES:
        value: datetime.datetime | None = getattr(data, name)
        columns[name] = value.isoformat() if value is not None else None
    return columns


def entry_data_rebuilt(
    *, resource_type: str, source_id: str, resource: dict[str, Any], columns: dict[str, Any]
) -> EntryData | None:
    """The EntryData a parked entry was parsed into; None if parked before columns were kept."""
    if not columns or not resource:
        return None

    def text(name: str) -> str:
        return str(columns.get(name) or "")

    def when(name: str) -> datetime.datetime | None:
        value = columns.get(name)
        return datetime.datetime.fromisoformat(value) if value else None

    return EntryData(
        resource_type=resource_type,
        source_id=source_id,
        resource=resource,
        section=text("section"),
        content_hash=text("content_hash"),
        version_id=text("version_id"),
        source_updated_at=when("source_updated_at"),
        effective_at=when("effective_at"),
        status=text("status"),
        code_system=text("code_system"),
        code=text("code"),
        code_display=text("code_display"),
        sensitivity=tuple(columns.get("sensitivity") or ()),
        codes=tuple(columns.get("codes") or ()),
    )
