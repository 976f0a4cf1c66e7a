"""Receiving an HL7 v2 message (HTTP or MLLP): the receipt checks, storing it and the ACK."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings

from ingestion.hl7v2.ack import ack as hl7_ack
from ingestion.hl7v2.convert import convert
from ingestion.hl7v2.er7 import decode, read_header
from ingestion.hl7v2.results import Converted, Hl7Header, Hl7Problem, Hl7Rejected
from ingestion.models import FeedCredential, FeedMessage, MessageKind
from ingestion.receiving import (
    IdempotencyConflict,
    bad_character_path,
    feed_message_receive,
    feed_message_refuse,
)
from sharedrecord.access import organisation_is_pull_only, organisation_may_send_feeds


@dataclass(frozen=True)
class Hl7Answer:
    ack: bytes
    code: str  # AA, AE or AR
    message: FeedMessage | None


def hl7_message_receive(*, credential: FeedCredential, payload: bytes) -> Hl7Answer:
    """Take one HL7 v2 message for HTTP or MLLP: store it durably, then answer with an ACK.

    - AR (nothing stored): an unreadable MSH, an unsupported type, event or
      version, no PID, an inactive agreement, or a control id (MSH-10) this
      sender already used for different content.
    - AE: stored and processed, but parts had content errors (each in an ERR
      naming segment^sequence^field); the faulty parts are dropped, the rest kept.
    - AA: stored; processing is queued.
    The same control id with the same content is a redelivery: the same answer,
    nothing stored twice. The ACK is built only after the commit.
    Side effects: one FeedMessage and audit events (received, or rejected).
    """
    organisation = credential.organisation
    text = decode(payload)
    try:
        if not organisation_may_send_feeds(organisation):
            raise Hl7Rejected(
                Hl7Problem(
                    "MSH", 1, 4, "207", "Your organisation has no active data sharing agreement."
                ),
                _header_of(text),
            )
        if organisation_is_pull_only(organisation):
            raise Hl7Rejected(
                Hl7Problem(
                    "MSH", 1, 4, "207",
                    "Your organisation is configured as pull-only: it sends no feeds.",
                ),
                _header_of(text),
            )  # fmt: skip
        converted = _hl7_checked(text, payload)
    except Hl7Rejected as rejected:
        return _hl7_refused(credential, rejected.header, rejected.problem)
    header = converted.header
    try:
        received = feed_message_receive(
            credential=credential,
            kind=MessageKind.HL7V2,
            payload=payload,
            idempotency_key=f"hl7v2:{header.control_id}",
            entry_count=converted.entry_count,
        )
    except IdempotencyConflict:
        problem = Hl7Problem("MSH", 1, 10, "205", "MSH-10: this control id was already "
                                   "used for a different message. Use a new one.")  # fmt: skip
        return _hl7_refused(credential, header, problem)
    code = converted.ack_code
    text = "Accepted" if code == "AA" else "Accepted; parts were not kept, see ERR"
    answer = hl7_ack(header=header, code=code, problems=converted.problems, text=text,
                       control_id=f"ACK{received.message.public_id.hex[:16]}")  # fmt: skip
    return Hl7Answer(answer, code, received.message)


def _header_of(text: str) -> Hl7Header | None:
    """The MSH an AR answers in the sender's terms (refused characters left out of it)."""
    try:
        return read_header(_HL7_BAD_CHARACTER.sub("", text))
    except Hl7Rejected as rejected:
        return rejected.header


# In ER7 only CR ends a segment (decode() turned LF into CR) and tab may stand in text.
_HL7_BAD_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")


def _hl7_checked(text: str, payload: bytes) -> Converted:
    """Convert a message after the receipt checks the worker relies on; raises Hl7Rejected.

    1. No control character in any field, written or as a \\X..\\ hex escape
       (PostgreSQL refuses NUL; FHIR strings allow only tab, CR and LF).
    2. The conversion itself (MSH, type, event, version, PID).
    3. No more record entries than FEED_MAX_ENTRIES, the limit the worker applies.
    4. Nothing in the converted Bundle the FHIR edge would refuse (a last guard).
    """
    problem = _hl7_character_problem(text)
    if problem is not None:
        raise Hl7Rejected(problem, _header_of(text))
    converted = convert(payload)
    limit = settings.FEED_MAX_ENTRIES
    if converted.entry_count > limit:
        raise Hl7Rejected(
            Hl7Problem(
                "", 0, 0, "207",
                f"The message makes {converted.entry_count} record entries (results and the "
                f"rest); the limit is {limit}. Split it.",
            ),
            converted.header,
        )  # fmt: skip
    if bad_character_path(converted.bundle, "Bundle") is not None:
        raise Hl7Rejected(
            Hl7Problem("", 0, 0, "102", "A field decodes to a control character."),
            converted.header,
        )
    return converted


def _hl7_character_problem(text: str) -> Hl7Problem | None:
    """An ERR naming the first field that holds a refused control character, or None."""
    found = _HL7_BAD_CHARACTER.search(text)
    position, code = (found.start(), ord(found.group())) if found else (len(text), 0)
    escape = text[6] if text.startswith("MSH") and len(text) > 7 else "\\"
    hex_escape = re.escape(escape) + "X([0-9A-Fa-f]+)" + re.escape(escape)
    for match in re.finditer(hex_escape, text[:position]):
        digits = match.group(1)
        bad = [b for b in bytes.fromhex(digits[: len(digits) // 2 * 2]) if b < 0x20
               and b not in (0x09, 0x0A, 0x0D)]  # fmt: skip
        if bad:
            position, code = match.start(), bad[0]
            break
    if position == len(text):
        return None
    start = text.rfind("\r", 0, position) + 1
    name = text[start : start + 3]
    if not _SEGMENT_NAME.fullmatch(name):
        return Hl7Problem("", 0, 0, "102", f"A control character (U+{code:04X}) is not allowed.")
    sequence = sum(1 for s in text[:start].split("\r") if s[:3] == name) + 1
    separator = text[3] if len(text) > 3 else "|"
    field = text.count(separator, start, position) + (1 if name == "MSH" else 0)
    return Hl7Problem(
        name, sequence, field, "102",
        f"{name}-{field}: a control character (U+{code:04X}) is not allowed; only tab "
        "and segment ends are.",
    )  # fmt: skip


def _hl7_refused(
    credential: FeedCredential, header: Hl7Header | None, problem: Hl7Problem
) -> Hl7Answer:
    feed_message_refuse(
        credential=credential,
        kind=MessageKind.HL7V2,
        code=problem.code,
        location=problem.location,
        reason=problem.message,
    )
    answer = hl7_ack(header=header, code="AR", problems=[problem], text=problem.message)
    return Hl7Answer(answer, "AR", None)
