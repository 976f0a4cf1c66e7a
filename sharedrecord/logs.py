"""Structured logs: one JSON object a line, carrying the request id the audit trail records.

Every log line (ours, Django's, Celery's) goes through structlog's formatter:
a timestamp, the level, the logger, the event, and what is bound for the
request or task in hand (`request_id`, the same value as the audit events
written for that request; `task_id` and `task` in a worker). Personal data
is kept out by construction (we log public ids, codes and counts, never
names, NHS numbers or dates of birth) and, as a second line of defence,
anything shaped like an NHS number, and the values a PostgreSQL error quotes,
are masked before a line is written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

# Ten digits, optionally spaced 3-3-4 or hyphenated: an NHS number's shapes, wherever
# they stand ("NHS9434765919", "9434765919."), except inside a hex id (a request id or
# UUID holds digit runs: a hex digit beside them means an id) or a decimal number.
_NHS_NUMBER = re.compile(
    r"(?<![0-9A-Fa-f])(?<!\d\.)\d{3}[ -]?\d{3}[ -]?\d{4}(?![0-9A-Fa-f])(?!\.\d)"
)
MASK = "[nhs-number removed]"
# The parts of a PostgreSQL error (a psycopg exception's text, in a traceback) that carry
# values: a key's ("Key (nhs_number)=(...) already exists"), a failing row's, and the
# person lock's id in a deadlock's detail (a hash of the NHS number, which is read back by
# hashing every number). Each is cut to the end of its line.
_DATABASE_VALUES = re.compile(
    r"(?P<lead>Key \([^)\n]*\)=|Failing row contains |advisory lock )[(\[][^\n]*"
)
DATABASE_MASK = "[values removed]"
REQUEST_FIELDS = ("method", "route", "status", "duration_ms", "user")


def mask_personal_data(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask anything shaped like an NHS number, and a database error's values, in the event."""
    for key, value in list(event.items()):
        if isinstance(value, str):
            masked = _NHS_NUMBER.sub(MASK, value)
            event[key] = _DATABASE_VALUES.sub(rf"\g<lead>{DATABASE_MASK}", masked)
    return event


def _pre_chain() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Only our own request line's fields: a library's `extra` (Celery's task
        # data) would repeat the traceback and could carry a task's arguments.
        structlog.stdlib.ExtraAdder(allow=REQUEST_FIELDS),
    ]


def json_formatter() -> structlog.stdlib.ProcessorFormatter:
    """The formatter of every handler (settings LOGGING, `LOG_FORMAT=json`)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_pre_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            mask_personal_data,
            structlog.processors.JSONRenderer(),
        ],
    )


def console_formatter() -> structlog.stdlib.ProcessorFormatter:
    """Readable lines for a developer's terminal (`LOG_FORMAT=console`), masked the same.

    Except tracebacks: the renderer prints them itself, unmasked. Never for a deployment.
    """
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_pre_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            mask_personal_data,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
    )


def log_context_bind(**values: str) -> None:
    """Bind values (ids only) to every log line of this request or task until cleared."""
    structlog.contextvars.bind_contextvars(**values)


def log_context_clear() -> None:
    structlog.contextvars.clear_contextvars()


request_logger = logging.getLogger("sharedrecord.request")
