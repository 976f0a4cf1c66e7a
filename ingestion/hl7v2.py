"""HL7 v2 (ER7) messages in, the same FHIR R4 entries the record already holds out.

Pure, like ingestion/fhir.py: no ORM, no settings, no network. python-hl7
splits the message; the checks it does not make (MSH fields, dates, numeric
values, NHS numbers) are ours, and each problem names its segment and field
for the ACK's ERR segment, never the value.

Steps of `convert`:
1. Decode: drop a UTF-8 byte order mark, honour MSH-18 (UTF-8, 8859/1, ASCII;
   undeclared: UTF-8, else Windows-1252), make every segment end CR (senders
   use LF or CRLF).
2. Read MSH: field separator, encoding characters, MSH-9 type, MSH-10 control
   id, MSH-12 version. Anything wrong here is AR: we cannot take the message.
3. Map the message type to FHIR resources (Patient, Encounter, Observation,
   DiagnosticReport, Appointment, DocumentReference) in a transaction Bundle
   with stable ids, so a later event about the same visit, order, appointment
   or document updates it. A11 (cancel admit) is a DELETE; A40 returns one
   merge per PID/MRG pair for the worker. Z-segments and segments we do not
   use are ignored.
4. Content problems (a bad date, a non-numeric NM value, an invalid NHS
   number, an oversized field) drop only the faulty part and are reported:
   the ACK is AE and everything else is kept.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

import hl7
from nhs_number import is_valid as nhs_number_valid

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
LOCAL_TZ = zoneinfo.ZoneInfo("Europe/London")
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
# Identifier types and assigning authorities that mark an NHS number in PID-3.
NHS_ID_TYPES = frozenset({"NH", "NHS", "NHSNMBR", "NHSNBR"})
NHS_AUTHORITIES = frozenset({"NHS", "NHSNBR", "NHS NUMBER", "2.16.840.1.113883.2.1.4.1"})
LOINC, SNOMED = "http://loinc.org", "http://snomed.info/sct"
CODE_SYSTEMS = {
    "LN": LOINC,
    "LOINC": LOINC,
    "SCT": SNOMED,
    "SNM": SNOMED,
    "SNOMED": SNOMED,
    "SNOMEDCT": SNOMED,
    "I10": "http://hl7.org/fhir/sid/icd-10",
}
PATIENT_CLASS = {
    "E": ("EMER", "emergency"),
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "P": ("PRENC", "pre-admission"),
    "R": ("AMB", "ambulatory"),
    "B": ("AMB", "ambulatory"),
    "N": ("AMB", "ambulatory"),
}
RESULT_STATUS = {
    "F": "final",
    "C": "corrected",
    "P": "preliminary",
    "X": "cancelled",
    "R": "preliminary",
    "I": "registered",
    "S": "partial",
    "D": "entered-in-error",
    "W": "entered-in-error",
    "A": "partial",
    "U": "final",
}
INTERPRETATIONS = {"H", "HH", "L", "LL", "A", "AA", "N", "<", ">", "POS", "NEG", "S", "R", "I"}
DOCUMENT_TYPES = {
    "DS": "Discharge summary",
    "CN": "Consultation note",
    "OP": "Operative report",
    "PN": "Procedure note",
    "HP": "History and physical",
    "TS": "Transfer summary",
    "CD": "Clinic letter",
    "RD": "Radiology report",
    "PR": "Progress note",
}
DATE_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")


# ------------------------------------------------------------------ results


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


ERROR_TEXT = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "205": "Duplicate key identifier",
    "207": "Application internal error",
}


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


# ------------------------------------------------------------------ decoding


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


def _reject(
    code: str, message: str, segment: str = "MSH", fld: int = 0, header: Hl7Header | None = None
) -> Hl7Rejected:
    return Hl7Rejected(Hl7Problem(segment, 1 if segment else 0, fld, code, message), header)


def read_header(text: str) -> Hl7Header:
    """MSH, checked; raises Hl7Rejected (AR) for anything that makes the message unreadable."""
    if not text.startswith("MSH"):
        raise _reject("100", "The message must start with an MSH segment.", "", 0)
    if len(text) < 8:
        raise _reject("101", "MSH is incomplete: no encoding characters.", fld=2)
    sep = text[3]
    if sep.isalnum() or sep.isspace():
        raise _reject("102", "MSH-1 (field separator) must be a symbol such as '|'.", fld=1)
    msh = text.split("\r", 1)[0].split(sep)
    encoding = msh[1] if len(msh) > 1 else ""
    if len(encoding) < 3 or len(set(encoding[:4])) != len(encoding[:4]) or sep in encoding:
        raise _reject("101", "MSH-2 (encoding characters) is missing or malformed.", fld=2)

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
        raise _reject("101", "MSH-9 (message type) is missing.", fld=9, header=header)
    if not f(10):
        raise _reject("101", "MSH-10 (message control id) is missing.", fld=10, header=header)
    if len(f(10)) > 199:
        raise _reject("102", "MSH-10 (message control id) is too long.", fld=10, header=header)
    if version not in SUPPORTED_VERSIONS:
        raise _reject(
            "203", f"MSH-12: version '{version[:10]}' is not supported.", fld=12, header=header
        )
    if header.message_type not in SUPPORTED:
        raise _reject(
            "200",
            f"MSH-9: message type {header.message_type[:3]} is not taken.",
            fld=9,
            header=header,
        )
    if header.event not in SUPPORTED[header.message_type]:
        raise _reject(
            "201",
            f"MSH-9: event {header.message_type[:3]}^{header.event[:3]} is not taken.",
            fld=9,
            header=header,
        )
    return header


# ------------------------------------------------------------------ field access


class _Message:
    """Segments of one parsed message and the ER7 escaping rules, with problem collection."""

    def __init__(self, text: str, header: Hl7Header) -> None:
        try:
            self.parsed = hl7.parse(text)
        except Exception as exc:  # python-hl7 raises IndexError/ParseException on garbage
            raise _reject(
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


def fhir_datetime(value: str) -> str | None:
    """HL7 DTM (any precision, optional offset) as a FHIR date or dateTime; None if invalid."""
    match = DATE_RE.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, _fraction, offset = match.groups()
    try:
        if hour is None:
            datetime.date(int(year), int(month or 1), int(day or 1))  # a real day, or ValueError
            return "-".join(p for p in (year, month, day) if p)
        moment = datetime.datetime(
            int(year), int(month or 1), int(day or 1), int(hour), int(minute or 0), int(second or 0)
        )
    except ValueError:
        return None
    if month is None or day is None:
        return None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        if hours > 14 or minutes > 59:
            return None
        tz = datetime.timezone(sign * datetime.timedelta(hours=hours, minutes=minutes))
    else:
        tz = LOCAL_TZ  # type: ignore[assignment]
    return moment.replace(tzinfo=tz).isoformat(timespec="seconds")


def fhir_id(*parts: str) -> str:
    """A FHIR id from source identifiers: [A-Za-z0-9-.]{1,64}, hashed when it would not fit."""
    text = "-".join(p for p in parts if p)
    cleaned = re.sub(r"[^A-Za-z0-9.\-]", "-", text).strip("-") or "x"
    if len(cleaned) <= 64:
        return cleaned
    return cleaned[:40] + "-" + hashlib.sha256(text.encode()).hexdigest()[:23]


def _concept(m: _Message, value: str) -> dict[str, Any] | None:
    parts = m.comps(value) + [""] * 6
    code, display, system = parts[:3]
    if not code and not display:
        code, display, system = parts[3:6]  # CWE's alternate identifier
    if not code and not display:
        return None
    concept: dict[str, Any] = {}
    if code:
        coding: dict[str, Any] = {"code": code[:64]}
        if system.upper() in CODE_SYSTEMS:
            coding["system"] = CODE_SYSTEMS[system.upper()]
        if display:
            coding["display"] = display
        concept["coding"] = [coding]
    concept["text"] = display or code
    return concept


# ------------------------------------------------------------------ the person


def _nhs_numbers(m: _Message, pid: Any, seq: int = 1) -> tuple[str, list[dict[str, Any]], str]:
    """(NHS number or "", other identifiers, the sender's own patient id) from PID-3 and PID-2."""
    nhs = ""
    others: list[dict[str, Any]] = []
    local = ""
    for n in (3, 2):
        for rep in m.reps(pid, n):
            parts = m.comps(rep) + [""] * 5
            value, authority, id_type = parts[0].strip(), parts[3].strip(), parts[4].strip()
            if not value:
                continue
            authority_id = authority.upper()
            if id_type.upper() in NHS_ID_TYPES or authority_id in NHS_AUTHORITIES:
                digits = value.replace(" ", "")
                if not (digits.isdigit() and len(digits) == 10 and nhs_number_valid(digits)):
                    m.problem(
                        "PID",
                        seq,
                        n,
                        "102",
                        f"PID-{n}: the NHS number is not a valid "
                        "10-digit number (Modulus 11); the message is held for review.",
                    )
                    nhs = nhs or digits[:20]  # kept so the worker parks it, never guesses
                    continue
                if nhs and nhs != digits:
                    m.problem("PID", seq, n, "102", f"PID-{n} holds two different NHS numbers.")
                    continue
                nhs = digits
            else:
                others.append(
                    {
                        "value": value[:64],
                        **({"type": {"text": id_type}} if id_type else {}),
                        **({"assigner": {"display": authority}} if authority else {}),
                    }
                )
                local = local or value
    return nhs, others, local


def _patient(
    m: _Message, pid: Any, pd1: Any | None, seq: int = 1
) -> tuple[dict[str, Any], str, str]:
    nhs, others, local = _nhs_numbers(m, pid, seq)
    resource_id = fhir_id("pt", local) if local else fhir_id("pt-nhs", nhs or m.header.control_id)
    identifiers = [{"system": NHS_NUMBER_SYSTEM, "value": nhs}] if nhs else []
    identifiers += others[:5]
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id}
    if identifiers:
        resource["identifier"] = identifiers
    names: list[dict[str, Any]] = []
    for rep in m.reps(pid, 5)[:3]:
        parts = m.comps(rep) + [""] * 6
        family, given, middle, _, prefix = parts[0], parts[1], parts[2], parts[3], parts[4]
        if family or given:
            name: dict[str, Any] = {"use": "official" if not names else "usual"}
            if family:
                name["family"] = family.strip()[:200]
            if given or middle:
                name["given"] = [g.strip()[:100] for g in (given, middle) if g.strip()]
            if prefix.strip():
                name["prefix"] = [prefix.strip()[:20]]
            names.append(name)
    if names:
        resource["name"] = names
    birth = m.when(pid, "PID", seq, 7)
    if birth:
        resource["birthDate"] = birth[:10]
    sex = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "unknown"}
    if (gender := m.get(pid, 8).upper()) in sex:
        resource["gender"] = sex[gender]
    addresses = []
    for rep in m.reps(pid, 11)[:2]:
        parts = m.comps(rep) + [""] * 6
        line = [p.strip()[:200] for p in (parts[0], parts[1]) if p.strip()]
        address = {
            k: v
            for k, v in {
                "line": line,
                "city": parts[2].strip()[:100],
                "postalCode": parts[4].strip()[:10],
            }.items()
            if v
        }
        if address:
            addresses.append({"use": "home", **address})
    if addresses:
        resource["address"] = addresses
    if m.get(pid, 30).upper() == "Y":
        died = m.when(pid, "PID", seq, 29)
        if died:
            resource["deceasedDateTime"] = died
        else:
            resource["deceasedBoolean"] = True
    if pd1 is not None:
        # PD1-3: the patient's primary facility, in UK feeds the registered GP practice.
        practice = m.comps(m.reps(pd1, 3)[0]) if m.reps(pd1, 3) else []
        ods = next(
            (p for p in (practice[2:3] + practice[9:10]) if re.match(r"^[A-Z0-9]{3,8}$", p)), ""
        )
        if ods:
            resource["generalPractitioner"] = [
                {"identifier": {"system": ODS_SYSTEM, "value": ods}, "display": practice[0][:200]}
            ]
    return resource, nhs, resource_id


# ------------------------------------------------------------------ the events


def _meta(m: _Message) -> dict[str, Any]:
    evn = m.first("EVN")
    when = (m.when(evn[0], "EVN", 1, 2) if evn else None) or fhir_datetime(m.header.sent_at)
    return {"lastUpdated": when} if when and "T" in when else {}


def _encounter(m: _Message, patient_ref: str, patient_id: str) -> dict[str, Any] | None:
    found = m.first("PV1")
    if found is None:
        m.problem("PV1", 1, 0, "100", "The event needs a PV1 segment; no encounter was stored.")
        return None
    pv1, _ = found
    visit = m.get(pv1, 19)
    admitted = m.when(pv1, "PV1", 1, 44)
    event = m.header.event
    key = visit or (admitted or "")
    if not key:
        m.problem(
            "PV1",
            1,
            19,
            "101",
            "PV1-19 (visit number) and PV1-44 (admit time) are "
            "missing: later events cannot update this encounter.",
            severity="W",
        )
        key = m.header.control_id
    klass = PATIENT_CLASS.get(m.get(pv1, 2).upper(), ("AMB", "ambulatory"))
    status = {"A03": "finished", "A05": "planned", "A11": "cancelled"}.get(event, "in-progress")
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": fhir_id("enc", visit or patient_id, "" if visit else key),
        "status": status,
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": klass[0],
            "display": klass[1],
        },
        "subject": {"reference": patient_ref},
    }
    if visit:
        encounter["identifier"] = [{"value": visit[:64]}]
    service = m.get(pv1, 10)
    if service:
        encounter["serviceType"] = {"text": service[:200]}
    period: dict[str, str] = {}
    if admitted:
        period["start"] = admitted
    discharged = m.when(pv1, "PV1", 1, 45) if event == "A03" else None
    if discharged:
        period["end"] = discharged
    if period.get("start") and period.get("end") and period["end"] < period["start"]:
        m.problem("PV1", 1, 45, "102", "PV1-45 (discharge) is before PV1-44 (admit).")
        period.pop("end")
    if period:
        encounter["period"] = period
    location = m.comps(m.reps(pv1, 3)[0]) if m.reps(pv1, 3) else []
    where = ", ".join(p for p in location[:4] if p.strip())
    if where:
        encounter["location"] = [{"location": {"display": where[:200]}}]
    pv2 = m.first("PV2")
    if pv2 is not None:
        reason = m.reps(pv2[0], 3)
        concept = _concept(m, reason[0]) if reason else None
        if concept:
            encounter["reasonCode"] = [concept]
    if m.header.sending_facility:
        encounter["serviceProvider"] = {"display": m.header.sending_facility[:200]}
    return encounter


def _numeric(m: _Message, obx: Any, seq: int) -> dict[str, Any] | None:
    """OBX-5 of an NM or SN result as a FHIR Quantity; a non-number is reported, not kept."""
    parts = [*m.comps(m.reps(obx, 5)[0]), "", ""]
    if m.get(obx, 2).upper() == "SN":  # structured numeric: comparator^number
        comparator, text = parts[0].strip(), parts[1].strip()
    else:
        comparator, text = "", parts[0].strip()
    match = re.match(r"^([<>]=?)?\s*(-?\d+(?:\.\d+)?)$", text)
    if not match:
        m.problem(
            "OBX",
            seq,
            5,
            "102",
            "OBX-5 is not a number although OBX-2 says it is; the value was not kept.",
        )
        return None
    quantity: dict[str, Any] = {
        "value": float(match.group(2)) if "." in match.group(2) else int(match.group(2))
    }
    comparator = comparator or match.group(1) or ""
    if comparator in ("<", "<=", ">", ">="):  # FHIR's comparators; SN's "=" needs none
        quantity["comparator"] = comparator
    unit = m.get(obx, 6) or m.get(obx, 6, 2)
    if unit:
        quantity["unit"] = unit[:40]
    return quantity


def _range(text: str) -> dict[str, Any] | None:
    text = text.strip()
    if not text:
        return None
    match = re.match(r"^(-?\d+(?:\.\d+)?)\s*[-_]\s*(-?\d+(?:\.\d+)?)$", text)
    if match:
        return {
            "low": {"value": float(match.group(1))},
            "high": {"value": float(match.group(2))},
            "text": text,
        }
    match = re.match(r"^<\s*=?\s*(-?\d+(?:\.\d+)?)$", text)
    if match:
        return {"high": {"value": float(match.group(1))}, "text": text}
    match = re.match(r"^>\s*=?\s*(-?\d+(?:\.\d+)?)$", text)
    if match:
        return {"low": {"value": float(match.group(1))}, "text": text}
    return {"text": text[:200]}


def _observation(
    m: _Message, obx: Any, seq: int, report_id: str, patient_ref: str, fallback_when: str | None
) -> dict[str, Any] | None:
    kind = m.get(obx, 2).upper()
    code = _concept(m, m.reps(obx, 3)[0]) if m.reps(obx, 3) else None
    if code is None:
        m.problem(
            "OBX",
            seq,
            3,
            "101",
            "OBX-3 (observation identifier) is missing; the result was not kept.",
        )
        return None
    status = RESULT_STATUS.get(m.get(obx, 11).upper(), "final")
    set_id = m.get(obx, 1) or str(seq)
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": fhir_id("obs", report_id, set_id, m.get(obx, 4)),
        "status": status,
        "code": code,
        "subject": {"reference": patient_ref},
    }
    values = m.reps(obx, 5)
    if kind in ("NM", "SN"):
        quantity = _numeric(m, obx, seq) if values else None
        if quantity:
            resource["valueQuantity"] = quantity
    elif kind in ("CE", "CWE", "CNE", "CF") and values:
        concept = _concept(m, values[0])
        if concept:
            resource["valueCodeableConcept"] = concept
    elif values:
        text = "\n".join(m.text(v) for v in values)
        text = m.long_text("OBX", seq, 5, text)
        if text:
            resource["valueString"] = text
    reference = _range(m.get(obx, 7))
    if reference:
        resource["referenceRange"] = [reference]
    flags = [f for f in (m.comps(r)[0].strip().upper() for r in m.reps(obx, 8)) if f]
    if flags:
        resource["interpretation"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": f,
                    }
                ]
            }
            if f in INTERPRETATIONS
            else {"text": f[:40]}
            for f in flags[:3]
        ]
    when = m.when(obx, "OBX", seq, 14) or fallback_when
    if when:
        resource["effectiveDateTime"] = when
    return resource


def _results(m: _Message, patient_ref: str, entries: list[dict[str, Any]]) -> None:
    """ORU^R01: one DiagnosticReport per OBR, one Observation per OBX under it."""
    report: dict[str, Any] | None = None
    text_lines: list[str] = []
    order = 0

    def close() -> None:
        if report is None:
            return
        if any(text_lines):
            body = "\n".join(line for line in text_lines if line)
            report["conclusion"] = body[:2000]
            report["presentedForm"] = [
                {"contentType": "text/plain", "data": base64.b64encode(body.encode()).decode()}
            ]

    for name, segment, seq in m.segments:
        if name == "OBR":
            close()
            order += 1
            filler, placer = m.get(segment, 3), m.get(segment, 2)
            report_id = fhir_id(
                "dr",
                filler or placer or m.header.control_id,
                "" if (filler or placer) else str(order),
            )
            code = _concept(m, m.reps(segment, 4)[0]) if m.reps(segment, 4) else None
            report = {
                "resourceType": "DiagnosticReport",
                "id": report_id,
                "status": RESULT_STATUS.get(m.get(segment, 25).upper(), "final"),
                "code": code or {"text": "Result"},
                "subject": {"reference": patient_ref},
            }
            when = m.when(segment, "OBR", seq, 7)
            if when:
                report["effectiveDateTime"] = when
            text_lines = []
            entries.append(report)
        elif name == "OBX":
            if report is None:
                # Patient-level observations (before any OBR): kept, outside a report.
                observation = _observation(
                    m, segment, seq, fhir_id("msg", m.header.control_id), patient_ref, None
                )
                if observation:
                    entries.append(observation)
                continue
            if m.get(segment, 2).upper() in ("TX", "FT") and not m.get(segment, 7):
                # Report text: its lines become the report's text, not separate results.
                lines = "\n".join(m.text(v) for v in m.reps(segment, 5))
                text_lines.append(m.long_text("OBX", seq, 5, lines))
                continue
            observation = _observation(
                m, segment, seq, str(report["id"]), patient_ref, report.get("effectiveDateTime")
            )
            if observation:
                entries.append(observation)
                report.setdefault("result", []).append(
                    {"reference": f"Observation/{observation['id']}"}
                )
    close()
    if order == 0:
        m.problem("OBR", 1, 0, "100", "ORU^R01 needs an OBR segment; no result was stored.")


def _appointment(m: _Message, patient_ref: str) -> dict[str, Any] | None:
    found = m.first("SCH")
    if found is None:
        m.problem("SCH", 1, 0, "100", "SIU needs an SCH segment; no appointment was stored.")
        return None
    sch, _ = found
    key = m.get(sch, 2) or m.get(sch, 1)
    if not key:
        m.problem("SCH", 1, 2, "101", "SCH-2 or SCH-1 (appointment id) is missing.")
        return None
    start = m.when(sch, "SCH", 1, 11, 4)
    end = m.when(sch, "SCH", 1, 11, 5)
    tq1 = m.first("TQ1")
    if tq1 is not None:
        start = m.when(tq1[0], "TQ1", 1, 7) or start
        end = m.when(tq1[0], "TQ1", 1, 8) or end
    ais = m.first("AIS")
    if ais is not None and not start:
        start = m.when(ais[0], "AIS", 1, 4)
    status = "cancelled" if m.header.event == "S15" else "booked"
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": fhir_id("appt", key),
        "status": status,
        "participant": [{"actor": {"reference": patient_ref}, "status": "accepted"}],
    }
    service = _concept(m, m.reps(ais[0], 3)[0]) if ais is not None and m.reps(ais[0], 3) else None
    reason = _concept(m, m.reps(sch, 7)[0]) if m.reps(sch, 7) else None
    if service:
        resource["serviceType"] = [service]
    if reason:
        resource["reasonCode"] = [reason]
    if start and "T" in start:
        resource["start"] = start
        if end and "T" in end and end >= start:
            resource["end"] = end
        elif end:
            m.problem("SCH", 1, 11, "102", "The appointment ends before it starts.")
    elif status != "cancelled":
        m.problem(
            "SCH",
            1,
            11,
            "101",
            "The appointment has no start time; it was kept without one.",
            severity="W",
        )
    if "start" in resource and "end" not in resource:
        resource["end"] = resource["start"]  # FHIR: booked appointments need both
    if status == "booked" and "start" not in resource:
        resource["status"] = "proposed"
    return resource


def _document(m: _Message, patient_ref: str) -> dict[str, Any] | None:
    found = m.first("TXA")
    if found is None:
        m.problem("TXA", 1, 0, "100", "MDM^T02 needs a TXA segment; no document was stored.")
        return None
    txa, _ = found
    key = m.get(txa, 12) or m.get(txa, 16) or m.header.control_id
    kind = m.get(txa, 2).upper()
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": fhir_id("doc", key),
        "status": "current",
        "type": {"text": DOCUMENT_TYPES.get(kind, kind or "Document")},
        "subject": {"reference": patient_ref},
    }
    if kind in DOCUMENT_TYPES:
        resource["type"]["coding"] = [
            {
                "code": kind,
                "display": DOCUMENT_TYPES[kind],
                "system": "http://terminology.hl7.org/CodeSystem/v2-0270",
            }
        ]
    doc_status = m.get(txa, 17).upper()
    if doc_status in ("AU", "LA"):
        resource["docStatus"] = "final"
    elif doc_status in ("IP", "IN", "PA", "DI", "DO"):
        resource["docStatus"] = "preliminary"
    when = m.when(txa, "TXA", 1, 4) or m.when(txa, "TXA", 1, 6)
    if when and "T" in when:
        resource["date"] = when
    lines: list[str] = []
    attachment: dict[str, Any] | None = None
    for segment, seq in m.all("OBX"):
        kind = m.get(segment, 2).upper()
        if kind == "ED":
            parts = m.comps(m.reps(segment, 5)[0]) if m.reps(segment, 5) else []
            parts += [""] * 5
            mime = (
                f"{parts[1]}/{parts[2]}".lower()
                if parts[1] and parts[2]
                else "application/octet-stream"
            )
            data = re.sub(r"\s", "", parts[4])
            if not data:
                m.problem("OBX", seq, 5, "101", "OBX-5 (encapsulated data) is empty.", severity="W")
                continue
            try:
                base64.b64decode(data, validate=True)
            except ValueError:
                m.problem("OBX", seq, 5, "102", "OBX-5 (encapsulated data) is not valid Base64.")
                continue
            attachment = {"contentType": mime, "data": data, "title": resource["type"]["text"]}
        elif kind == "RP":
            url = m.get(segment, 5)
            if url:
                attachment = {"url": url[:500], "title": resource["type"]["text"]}
        elif kind in ("TX", "FT", "ST"):
            lines.append(
                m.long_text("OBX", seq, 5, "\n".join(m.text(v) for v in m.reps(segment, 5)))
            )
    body = "\n".join(lines)
    if attachment is None and not body:
        m.problem(
            "OBX",
            1,
            5,
            "101",
            "The document has no content (OBX-5); its details are kept.",
            severity="W",
        )
        attachment = {"title": resource["type"]["text"]}
    if attachment is None:
        attachment = {
            "contentType": "text/plain; charset=utf-8",
            "title": resource["type"]["text"],
            "data": base64.b64encode(body.encode()).decode(),
        }
    resource["content"] = [{"attachment": attachment}]
    return resource


def _merges(m: _Message, first: dict[str, Any], entries: list[dict[str, Any]]) -> list[Merge]:
    """A40: one merge per PID/MRG pair (ADT_A39 repeats PID, [PD1], MRG, [PV1]).

    The first PID is the message's person (already in `entries` as `first`);
    each later PID adds its own Patient entry. A pair whose MRG is missing,
    or whose prior NHS number is invalid, is named in an ERR; the other pairs
    still merge.
    """
    groups: list[dict[str, Any]] = []
    for name, segment, seq in m.segments:
        if name == "PID":
            groups.append({"pid": segment, "seq": seq, "pd1": None, "mrg": None})
        elif groups and name == "PD1" and groups[-1]["pd1"] is None:
            groups[-1]["pd1"] = segment
        elif groups and name == "MRG" and groups[-1]["mrg"] is None:
            groups[-1]["mrg"], groups[-1]["mrg_seq"] = segment, seq
    merges: list[Merge] = []
    for number, group in enumerate(groups, start=1):
        if number == 1:
            survivor = first
        else:
            survivor = _patient(m, group["pid"], group["pd1"], group["seq"])[0]
            entries.append(survivor)
        if group["mrg"] is None:
            m.problem("MRG", number, 0, "100", "A40 needs an MRG segment after each PID, "
                      "naming the merged person.")  # fmt: skip
            continue
        survivor_nhs = next(
            (
                i["value"]
                for i in survivor.get("identifier", [])
                if i.get("system") == NHS_NUMBER_SYSTEM
            ),
            "",
        )
        if not nhs_number_valid(survivor_nhs):
            survivor_nhs = ""  # named in an ERR already; the worker parks the Patient
        prior_nhs, prior_local = _prior(m, group["mrg"], group["mrg_seq"])
        merges.append(Merge(prior_nhs, prior_local, survivor_nhs, str(survivor["id"])))
    return merges


def _prior(m: _Message, mrg: Any, seq: int) -> tuple[str, str]:
    """MRG-1: the merged-away person's NHS number ("" if none or invalid) and Patient id."""
    prior_nhs = ""
    prior_local = ""
    for rep in m.reps(mrg, 1):
        parts = m.comps(rep) + [""] * 5
        if parts[4].upper() in NHS_ID_TYPES or parts[3].upper() in NHS_AUTHORITIES:
            prior_nhs = parts[0].replace(" ", "")
        else:
            prior_local = prior_local or parts[0]
    if prior_nhs and not (
        len(prior_nhs) == 10 and prior_nhs.isdigit() and nhs_number_valid(prior_nhs)
    ):
        m.problem("MRG", seq, 1, "102", "MRG-1: the prior NHS number is not valid.")
        prior_nhs = ""
    return prior_nhs, fhir_id("pt", prior_local) if prior_local else ""


# ------------------------------------------------------------------ convert


def convert(payload: bytes) -> Converted:
    """One ER7 message as a FHIR transaction Bundle; raises Hl7Rejected for AR."""
    if not payload.strip():
        raise _reject("100", "The message is empty.", "", 0)
    text = decode(payload)
    header = read_header(text)
    m = _Message(text, header)
    pid_found = m.first("PID")
    if pid_found is None:
        raise _reject(
            "100",
            "The message has no PID segment: nobody to file it under.",
            "PID",
            0,
            header=header,
        )
    pd1 = None
    for name, segment, seq in m.segments:
        if name == "PID" and seq > 1:
            break  # a later A40 pair's PD1 belongs to its own person
        if name == "PD1":
            pd1 = segment
            break
    patient, _, patient_id = _patient(m, pid_found[0], pd1)
    patient_ref = f"Patient/{patient_id}"
    meta = _meta(m)
    entries: list[dict[str, Any]] = [patient]
    deletes: list[str] = []
    merges: list[Merge] = []
    event = header.event
    if header.message_type == "ADT":
        if event in ("A01", "A02", "A03", "A04", "A05", "A08", "A12", "A13"):
            encounter = _encounter(m, patient_ref, patient_id)
            if encounter:
                entries.append(encounter)
        elif event == "A11":
            encounter = _encounter(m, patient_ref, patient_id)
            if encounter:
                deletes.append(f"Encounter/{encounter['id']}")
        elif event == "A40":
            merges = _merges(m, patient, entries)
    elif header.message_type == "ORU":
        _results(m, patient_ref, entries)
    elif header.message_type == "SIU":
        appointment = _appointment(m, patient_ref)
        if appointment:
            entries.append(appointment)
    elif header.message_type == "MDM":
        document = _document(m, patient_ref)
        if document:
            entries.append(document)
    bundle_entries: list[dict[str, Any]] = []
    for resource in entries:
        if meta:
            resource["meta"] = {**meta, **resource.get("meta", {})}
        bundle_entries.append(
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
        )
    for url in deletes:
        bundle_entries.append({"request": {"method": "DELETE", "url": url}})
    bundle = {
        "resourceType": "Bundle",
        "id": fhir_id("hl7", header.control_id),
        "type": "transaction",
        "entry": bundle_entries,
    }
    return Converted(header, bundle, m.problems, merges, len(bundle_entries))


# ------------------------------------------------------------------ acknowledgements


def _escape(text: str, header: Hl7Header | None) -> str:
    sep = header.field_separator if header else "|"
    enc = header.encoding if header else "^~\\&"
    escape = enc[2] if len(enc) > 2 else "\\"
    out = text.replace(escape, f"{escape}E{escape}")
    for char, code in ((sep, "F"), (enc[0], "S"), (enc[1], "R"), (enc[3:4] or "&", "T")):
        out = out.replace(char, f"{escape}{code}{escape}")
    return out.replace("\r", " ").replace("\n", " ")


def ack(
    *,
    header: Hl7Header | None,
    code: str,
    problems: list[Hl7Problem],
    text: str,
    receiver: str = "SHAREDRECORD",
    control_id: str = "",
) -> bytes:
    """An ACK (MSA + ERR per problem) in the sender's version and separators, CR-separated."""
    sep = header.field_separator if header else "|"
    enc = header.encoding if header else "^~\\&"
    now = datetime.datetime.now(LOCAL_TZ).strftime("%Y%m%d%H%M%S%z")
    version = header.version if header and header.version in SUPPORTED_VERSIONS else "2.5.1"
    event = header.event if header else ""
    ours = control_id or hashlib.sha256(f"{now}{text}".encode()).hexdigest()[:20]
    msh = sep.join(
        [
            "MSH",
            enc,
            receiver,
            "",
            _escape(header.sending_application, header) if header else "",
            _escape(header.sending_facility, header) if header else "",
            now,
            "",
            f"ACK{enc[0]}{event}{enc[0]}ACK" if event else "ACK",
            ours,
            (header.processing_id if header and header.processing_id else "P"),
            version,
        ]
    )
    msa = sep.join(
        [
            "MSA",
            code,
            _escape(header.control_id if header else "", header),
            _escape(text[:80], header),
        ]
    )
    segments = [msh, msa]
    for p in problems[:50]:
        where = p.location.replace("^", enc[0])
        err_code = f"{p.code}{enc[0]}{ERROR_TEXT.get(p.code, 'Error')}{enc[0]}HL70357"
        segments.append(
            sep.join(
                ["ERR", "", where, err_code, p.severity, "", "", "", _escape(p.message, header)]
            )
        )
    return ("\r".join(segments) + "\r").encode("utf-8")
