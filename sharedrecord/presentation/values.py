"""FHIR values as a page shows them: every value[x] kind, with units and precision as sent.

A number is shown with the digits the source sent (the shortest decimal that
is the stored value, never a float artefact such as 0.30000000000000004).
A Quantity with no unit says "no unit given"; one sent with more decimal
places than any measurement holds says so, beside the value as sent. Either
way the clinician sees what the source said and that the source said it
oddly.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass
from typing import Any

from sharedrecord.presentation.dates import date_shown, period_shown, time_shown

NO_UNIT = "no unit given"
# UCUM's "1" (and "{...}" annotations alone) mark a quantity that has no unit by design.
UNITLESS_CODES = frozenset({"1"})
# More decimal places, and more significant digits, than any clinical measurement holds.
EXCESS_DECIMALS = 6
EXCESS_DIGITS = 9

# Everything a value[x] (or onset[x], abatement[x], ...) may hold, in the order tried.
CHOICE_KINDS = (
    "Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "CodeableConcept",
    "Coding", "String", "Markdown", "Boolean", "Integer", "PositiveInt", "UnsignedInt",
    "Decimal", "Range", "Ratio", "SampledData", "Time", "DateTime", "Date", "Instant", "Period",
    "Attachment", "Reference", "Identifier", "Code", "Uri",
)  # fmt: skip
QUANTITY_KINDS = frozenset({"Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity"})


def text_of(concept: Any) -> str:
    """A CodeableConcept's words: its text, else the first coding's display, else the code."""
    if not isinstance(concept, dict):
        return ""
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return str(concept["text"]).strip()
    codings = concept.get("coding") if "coding" in concept else [concept]
    for coding in codings or []:
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code")).strip()
    return ""


def texts_of(concepts: Any) -> str:
    if not isinstance(concepts, list):
        return ""
    return ", ".join(dict.fromkeys(t for t in (text_of(c) for c in concepts) if t))


def codes_of(concept: Any) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    return {str(c.get("code")) for c in concept.get("coding", []) or [] if isinstance(c, dict)}


def number_shown(value: Any) -> str:
    """A FHIR decimal or integer with the digits sent; "" for anything that is not a number."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr() is the shortest decimal that reads back as this float: what was sent.
        value = repr(value)
    if isinstance(value, str):
        try:
            value = decimal.Decimal(value.strip())
        except decimal.InvalidOperation:
            return ""
    if isinstance(value, decimal.Decimal):  # read with its precision (sharedrecord.fhirjson)
        return format(value, "f") if value.is_finite() else ""
    return ""


def number_of(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
        return None
    return float(value) if math.isfinite(float(value)) else None


def excess_decimals(number: str) -> int:
    """The decimal places of a number sent with more precision than a measurement has, else 0."""
    whole, _, fraction = number.lstrip("-").partition(".")
    significant = (whole + fraction).lstrip("0")
    if len(fraction) > EXCESS_DECIMALS and len(significant) > EXCESS_DIGITS:
        return len(fraction)
    return 0


def unit_of(quantity: Any) -> str:
    if not isinstance(quantity, dict):
        return ""
    unit = quantity.get("unit") or quantity.get("code") or ""
    return str(unit).strip()


def quantity_shown(quantity: Any, *, needs_unit: bool = True) -> str:
    """A Quantity: comparator, the number as sent, the unit (or "no unit given")."""
    if not isinstance(quantity, dict):
        return ""
    number = number_shown(quantity.get("value"))
    if not number:
        return ""
    comparator = str(quantity.get("comparator") or "")
    comparator = {"<": "< ", "<=": "≤ ", ">=": "≥ ", ">": "> ", "ad": "≥ "}.get(comparator, "")
    unit = unit_of(quantity)
    text = f"{comparator}{number}"
    if unit and unit not in UNITLESS_CODES:
        text += f" {unit}"
    elif not unit and needs_unit:
        text += f" ({NO_UNIT})"
    if places := excess_decimals(number):
        text += f" (sent with {places} decimal places)"
    return text


def range_shown(value: Any) -> str:
    """A Range: "2 to 4 mmol/L", "≥ 2 mmol/L", "≤ 4 mmol/L"."""
    if not isinstance(value, dict):
        return ""
    low = quantity_shown(value.get("low"), needs_unit=False)
    high = quantity_shown(value.get("high"), needs_unit=False)
    if low and high:
        return f"{low} to {high}"
    if low:
        return f"≥ {low}"
    if high:
        return f"≤ {high}"
    return ""


def ratio_shown(value: Any) -> str:
    """A Ratio: "1:128" (titres, no units) or "5 mg per 5 mL"."""
    if not isinstance(value, dict):
        return ""
    top = quantity_shown(value.get("numerator"), needs_unit=False)
    bottom = quantity_shown(value.get("denominator"), needs_unit=False)
    if not top:
        return ""
    if not bottom:
        return f"{top} per (no denominator given)"
    if not unit_of(value.get("numerator")) and not unit_of(value.get("denominator")):
        return f"{top}:{bottom}"
    return f"{top} per {bottom}"


def sampled_data_shown(value: Any) -> str:
    """SampledData: how many samples, how often, from what origin, and the samples."""
    if not isinstance(value, dict):
        return ""
    samples = str(value.get("data") or "").split()
    period = number_shown(value.get("period"))
    origin = quantity_shown(value.get("origin"), needs_unit=False)
    count = f"{len(samples)} sample{'s' if len(samples) > 1 else ''}"
    parts = [count if samples else "no samples sent"]
    if period:
        parts.append(f"every {period} ms")
    if origin:
        parts.append(f"origin {origin}")
    if (factor := number_shown(value.get("factor"))) and factor != "1":
        parts.append(f"factor {factor}")
    shown = " ".join(samples[:20]) + (f" … ({len(samples)} in all)" if len(samples) > 20 else "")
    return "Sampled data: " + ", ".join(parts) + (f": {shown}" if shown else "")


def attachment_shown(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    return str(value.get("title") or value.get("contentType") or "attachment")


def reference_shown(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    return str(value.get("display") or text_of(value.get("concept")) or "")


def choice_kind(element: Any, prefix: str) -> str:
    """Which kind of value[x] an element holds ("Quantity", "Boolean", ...), or ""."""
    if not isinstance(element, dict):
        return ""
    for kind in CHOICE_KINDS:
        if f"{prefix}{kind}" in element:
            return kind
    return ""


def choice_shown(element: Any, prefix: str = "value", *, needs_unit: bool = True) -> str:
    """Whatever an element's `prefix`[x] holds, in words; "" when it holds nothing."""
    kind = choice_kind(element, prefix)
    if not kind:
        return ""
    value = element[f"{prefix}{kind}"]
    if kind in QUANTITY_KINDS:
        return quantity_shown(value, needs_unit=needs_unit and kind == "Quantity")
    if kind in ("CodeableConcept", "Coding"):
        return text_of(value)
    if kind in ("String", "Markdown", "Code", "Uri"):
        return str(value).strip()
    if kind == "Boolean":
        return "Yes" if value is True else "No" if value is False else ""
    if kind in ("Integer", "PositiveInt", "UnsignedInt", "Decimal"):
        return number_shown(value)
    if kind == "Range":
        return range_shown(value)
    if kind == "Ratio":
        return ratio_shown(value)
    if kind == "SampledData":
        return sampled_data_shown(value)
    if kind == "Time":
        return time_shown(value)
    if kind in ("DateTime", "Date", "Instant"):
        return date_shown(value)
    if kind == "Period":
        return period_shown(value)
    if kind == "Attachment":
        return attachment_shown(value)
    if kind == "Reference":
        return reference_shown(value)
    if kind == "Identifier" and isinstance(value, dict):
        return str(value.get("value") or "")
    return ""


@dataclass(frozen=True)
class Result:
    """An Observation's (or a component's) result: the words, and a number to chart."""

    text: str
    number: float | None
    unit: str


def result_of(element: Any) -> Result:
    """The value[x] of an Observation or component, or why it is absent ("Result absent: …")."""
    if not isinstance(element, dict):
        return Result("", None, "")
    text = choice_shown(element, "value")
    if not text and isinstance(element.get("dataAbsentReason"), dict):
        text = f"Result absent: {text_of(element['dataAbsentReason']) or 'reason not given'}"
    quantity = element.get("valueQuantity")
    if isinstance(quantity, dict) and number_of(quantity.get("value")) is not None:
        return Result(text, number_of(quantity.get("value")), unit_of(quantity))
    return Result(text, None, "")
