"""HL7 v2 data types as FHIR values: date/times, ids, coded concepts, numbers and ranges."""

from __future__ import annotations

import datetime
import hashlib
import re
import zoneinfo
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sharedrecord.fhirjson import decimal_of

if TYPE_CHECKING:
    from ingestion.hl7v2.er7 import Message

LOCAL_TZ = zoneinfo.ZoneInfo("Europe/London")
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
DATE_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")


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


def coded_concept(m: Message, value: str) -> dict[str, Any] | None:
    """A CodeableConcept from a CE/CWE value (its alternate code when the first is empty)."""
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


def numeric(m: Message, obx: Any, seq: int) -> dict[str, Any] | None:
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
    quantity: dict[str, Any] = {"value": _number(match.group(2))}
    comparator = comparator or match.group(1) or ""
    if comparator in ("<", "<=", ">", ">="):  # FHIR's comparators; SN's "=" needs none
        quantity["comparator"] = comparator
    unit = m.get(obx, 6) or m.get(obx, 6, 2)
    if unit:
        quantity["unit"] = unit[:40]
    return quantity


def _number(text: str) -> int | Decimal | float:
    """A number's digits as sent: an integer, or a decimal with its precision (5.10)."""
    return decimal_of(text) if "." in text else int(text)


def numeric_range(text: str) -> dict[str, Any] | None:
    """A FHIR Range from reference-range text such as "3.5-5.0", or None."""
    text = text.strip()
    if not text:
        return None
    match = re.match(r"^(-?\d+(?:\.\d+)?)\s*[-_]\s*(-?\d+(?:\.\d+)?)$", text)
    if match:
        return {
            "low": {"value": _number(match.group(1))},
            "high": {"value": _number(match.group(2))},
            "text": text,
        }
    match = re.match(r"^<\s*=?\s*(-?\d+(?:\.\d+)?)$", text)
    if match:
        return {"high": {"value": _number(match.group(1))}, "text": text}
    match = re.match(r"^>\s*=?\s*(-?\d+(?:\.\d+)?)$", text)
    if match:
        return {"low": {"value": _number(match.group(1))}, "text": text}
    return {"text": text[:200]}
