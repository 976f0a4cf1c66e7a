"""CSV for streamed exports (the audit trail, the opt-out registry).

Shared here because audit is the one app every other may import.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

# A cell starting with one of these runs as a formula in a spreadsheet, and
# free text (a failed sign-in's username, a note) is typed by anyone.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_cell(value: Any) -> str:
    """The value as text, quoted with ' if a spreadsheet would otherwise run it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The header and each row as one CSV line, produced as the rows are read."""
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([csv_cell(value) for value in row])
