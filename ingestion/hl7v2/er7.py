"""ER7, HL7 v2's wire form: decoding, the MSH header and field access.

Pure: python-hl7 splits the message; the checks it does not make on MSH are
ours, and each names its field for the ACK's ERR segment, never the value.
"""

from __future__ import annotations

from typing import Any

import hl7

from ingestion.hl7v2.datatypes import fhir_datetime
from ingestion.hl7v2.results import Hl7Header, Hl7Problem, Hl7Rejected

MAX_FIELD_CHARS = 1_000_000  # the FHIR path's string limit, for the same reason
SUPPORTED_VERSIONS = (
    "2.1",
    "2.2",
    "2.3",
    "2.3.1",
    "2.4",
    "2.5",
    "2.5.1",
    "2.6",
    "2.7",
    "2.7.1",
    "2.8",
)

ADT_EVENTS = frozenset(
    {"A01", "A02", "A03", "A04", "A05", "A08", "A11", "A12", "A13", "A28", "A31", "A40"}
)
SUPPORTED: dict[str, frozenset[str]] = {
    "ADT": ADT_EVENTS,
    "ORU": frozenset({"R01"}),
    "SIU": frozenset({"S12", "S13", "S14", "S15"}),
    "MDM": frozenset({"T02"}),
}


def _charset(raw: bytes) -> str:
    first = raw.split(b"\r", 1)[0].split(b"\n", 1)[0].decode("latin-1")
    fields = first.split(first[3]) if len(first) > 3 else []
    declared = fields[17].split("~")[0].strip().upper() if len(fields) > 17 else ""
    if "8859" in declared:
        return "latin-1"
    if "UTF" in declared or "UNICODE" in declared:
        return "utf-8"
    return ""


def decode(payload: bytes) -> str:
    """The message as text with CR segment ends, however it was sent."""
    raw = payload.removeprefix(b"\xef\xbb\xbf")
    charset = _charset(raw)
    if charset:
        text = raw.decode(charset, errors="replace")
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", errors="replace")
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    return "\r".join(s for s in text.split("\r") if s.strip())


def reject(
    code: str, message: str, segment: str = "MSH", fld: int = 0, header: Hl7Header | None = None
) -> Hl7Rejected:
    """The error that refuses a whole message, naming one problem."""
    return Hl7Rejected(Hl7Problem(segment, 1 if segment else 0, fld, code, message), header)


def read_header(text: str) -> Hl7Header:
    """MSH, checked; raises Hl7Rejected (AR) for anything that makes the message unreadable."""
    if not text.startswith("MSH"):
        raise reject("100", "The message must start with an MSH segment.", "", 0)
    if len(text) < 8:
        raise reject("101", "MSH is incomplete: no encoding characters.", fld=2)
    sep = text[3]
    if sep.isalnum() or sep.isspace():
        raise reject("102", "MSH-1 (field separator) must be a symbol such as '|'.", fld=1)
    msh = text.split("\r", 1)[0].split(sep)
    encoding = msh[1] if len(msh) > 1 else ""
    if len(encoding) < 3 or len(set(encoding[:4])) != len(encoding[:4]) or sep in encoding:
        raise reject("101", "MSH-2 (encoding characters) is missing or malformed.", fld=2)

    def f(n: int) -> str:  # MSH-n is msh[n - 1]: MSH-1 is the separator itself
        return msh[n - 1].strip() if len(msh) > n - 1 else ""

    component = encoding[0]
    message_type, _, event = f(9).upper().partition(component)
    version = f(12).split(component)[0]
    # Built before the checks, so even an AR answers in the sender's terms.
    header = Hl7Header(
        field_separator=sep,
        encoding=encoding,
        sending_application=f(3).split(component)[0],
        sending_facility=f(4).split(component)[0],
        message_type=message_type,
        event=event.split(component)[0],
        control_id=f(10),
        processing_id=f(11).split(component)[0],
        version=version,
        sent_at=f(7),
    )
    if not f(9):
        raise reject("101", "MSH-9 (message type) is missing.", fld=9, header=header)
    if not f(10):
        raise reject("101", "MSH-10 (message control id) is missing.", fld=10, header=header)
    if len(f(10)) > 199:
        raise reject("102", "MSH-10 (message control id) is too long.", fld=10, header=header)
    if version not in SUPPORTED_VERSIONS:
        raise reject(
            "203", f"MSH-12: version '{version[:10]}' is not supported.", fld=12, header=header
        )
    if header.message_type not in SUPPORTED:
        raise reject(
            "200",
            f"MSH-9: message type {header.message_type[:3]} is not taken.",
            fld=9,
            header=header,
        )
    if header.event not in SUPPORTED[header.message_type]:
        raise reject(
            "201",
            f"MSH-9: event {header.message_type[:3]}^{header.event[:3]} is not taken.",
            fld=9,
            header=header,
        )
    return header


class Message:
    """Segments of one parsed message and the ER7 escaping rules, with problem collection."""

    def __init__(self, text: str, header: Hl7Header) -> None:
        try:
            self.parsed = hl7.parse(text)
        except Exception as exc:  # python-hl7 raises IndexError/ParseException on garbage
            raise reject(
                "100", "The message cannot be split into segments.", header=header
            ) from exc
        self.header = header
        self.rep, self.comp, self.sub = (
            header.encoding[1],
            header.encoding[0],
            header.encoding[3:4] or "&",
        )
        self.problems: list[Hl7Problem] = []
        self.segments: list[tuple[str, Any, int]] = []
        counts: dict[str, int] = {}
        for segment in self.parsed:
            name = str(segment[0]).strip()
            counts[name] = counts.get(name, 0) + 1
            self.segments.append((name, segment, counts[name]))

    def all(self, name: str) -> list[tuple[Any, int]]:
        return [(s, n) for seg_name, s, n in self.segments if seg_name == name]

    def first(self, name: str) -> tuple[Any, int] | None:
        found = self.all(name)
        return found[0] if found else None

    def raw(self, segment: Any, n: int) -> str:
        try:
            value = str(segment[n])
        except IndexError:
            return ""
        return value

    def text(self, value: str) -> str:
        try:
            return str(self.parsed.unescape(value))
        except Exception:
            return value

    def reps(self, segment: Any, n: int) -> list[str]:
        raw = self.raw(segment, n)
        return [r for r in raw.split(self.rep)] if raw else []

    def comps(self, value: str) -> list[str]:
        return [self.text(c.split(self.sub)[0]) for c in value.split(self.comp)]

    def get(self, segment: Any, n: int, c: int = 1) -> str:
        reps = self.reps(segment, n)
        if not reps:
            return ""
        parts = self.comps(reps[0])
        return parts[c - 1].strip() if len(parts) >= c else ""

    def problem(
        self, segment: str, seq: int, fld: int, code: str, message: str, severity: str = "E"
    ) -> None:
        self.problems.append(Hl7Problem(segment, seq, fld, code, message, severity))

    def when(self, segment: Any, name: str, seq: int, n: int, c: int = 1) -> str | None:
        """A DTM field as a FHIR dateTime, or None; a malformed one is reported and dropped."""
        value = self.get(segment, n, c)
        if not value:
            return None
        converted = fhir_datetime(value)
        if converted is None:
            self.problem(name, seq, n, "102", f"{name}-{n} is not a valid HL7 date/time.")
        return converted

    def long_text(self, name: str, seq: int, n: int, value: str) -> str:
        if len(value) > MAX_FIELD_CHARS:
            self.problem(
                name,
                seq,
                n,
                "102",
                f"{name}-{n} is longer than {MAX_FIELD_CHARS} characters; it was not kept.",
            )
            return ""
        return value
