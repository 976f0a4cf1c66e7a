"""The notices under the patient banner: one list, built in one place, for every record page.

What used to be three separate lines (the launch tag, the stale-source warnings,
the live sources that did not answer) is one list of Notice, in a fixed order:
where the record was opened from, then what may be missing from it. The
template (_notices.html) renders the list the same way on every page.

Pure: it reads what record.py and live.py already decided (no ORM, no policy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

NoticeKind = Literal["launch", "stale-source", "live-silent"]


@dataclass(frozen=True)
class Notice:
    """One line under the banner: `warning` ones say something may be missing."""

    kind: NoticeKind
    text: str
    warning: bool = False
    source_ods: str = ""


class _Source(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def ods_code(self) -> str: ...
    @property
    def late(self) -> bool: ...
    @property
    def last_received_ago(self) -> str: ...


class _Answer(Protocol):
    @property
    def source_name(self) -> str: ...
    @property
    def source_ods(self) -> str: ...
    @property
    def kind(self) -> str: ...


class _Live(Protocol):
    @property
    def asked(self) -> bool: ...

    @property
    def unanswered(self) -> Iterable[_Answer]: ...


def record_notices(
    *,
    patient_id: str,
    launch: Mapping[str, Any] | None = None,
    sources: Iterable[_Source] = (),
    live: _Live | None = None,
) -> list[Notice]:
    """The notices for one page of one person's record, in the order they are shown.

    1. "Opened from <system>" when this session was launched in context for
       this person (and only this person).
    2. Each sharing source that has gone quiet past its expected interval
       (SourceRow.late): its data may be out of date.
    3. Each live source asked for this view that did not answer.
    """
    notices: list[Notice] = []
    if launch and launch.get("patient") and str(launch.get("patient")) == patient_id:
        notices.append(Notice("launch", f"Opened from {launch.get('system', '')}"))
    for source in sources:
        if source.late:
            notices.append(
                Notice(
                    "stale-source",
                    f"{source.name} data may be out of date: last received "
                    f"{source.last_received_ago} ago. Anything it recorded since may not be "
                    "shown here.",
                    warning=True,
                    source_ods=source.ods_code,
                )
            )
    if live is not None and live.asked:
        for answer in live.unanswered:
            in_time = " in time" if answer.kind == "timeout" else ""
            more = (
                " It holds more than one person with this NHS number."
                if answer.kind == "ambiguous"
                else ""
            )
            notices.append(
                Notice(
                    "live-silent",
                    f"{answer.source_name} system did not answer{in_time}; its information "
                    f"is not shown.{more}",
                    warning=True,
                    source_ods=answer.source_ods,
                )
            )
    return notices
