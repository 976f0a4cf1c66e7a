"""A FHIR R4 Dosage in words, from its structured fields.

No well-kept Python library renders FHIR Dosage (PyPI's "dosage" is a comic
downloader), so this module does, after the FHIR R4 Dosage and Timing
definitions: the dose (quantity or range) and rate, the timing (frequency
and period with their maxima, days of the week, times of day, meal and
event codes, duration, count and bounds), "as needed" (with its reason),
route, site and method, and the maximum doses per period, administration
and lifetime. The sender's own text is shown beside it, never instead.

    "5 mL every 4 hours as needed; route: Oral; maximum 30 mL a day"
"""

from __future__ import annotations

from typing import Any

from sharedrecord.presentation.dates import date_shown, period_shown, time_shown
from sharedrecord.presentation.values import (
    number_shown,
    quantity_shown,
    range_shown,
    text_of,
    texts_of,
    unit_of,
)

UNITS = {
    "s": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "h": ("hour", "hours"),
    "d": ("day", "days"),
    "wk": ("week", "weeks"),
    "mo": ("month", "months"),
    "a": ("year", "years"),
}
DAYS = {
    "mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday",
    "fri": "Friday", "sat": "Saturday", "sun": "Sunday",
}  # fmt: skip
# FHIR EventTiming (with the v3 TimingEvent codes it includes).
EVENTS = {
    "MORN": "in the morning", "MORN.early": "early in the morning",
    "MORN.late": "late in the morning", "NOON": "at noon", "AFT": "in the afternoon",
    "AFT.early": "early in the afternoon", "AFT.late": "late in the afternoon",
    "EVE": "in the evening", "EVE.early": "early in the evening", "EVE.late": "late in the evening",
    "NIGHT": "at night", "PHS": "after sleep", "HS": "at bedtime", "WAKE": "on waking",
    "C": "with a meal", "CM": "with breakfast", "CD": "with lunch", "CV": "with the evening meal",
    "AC": "before a meal", "ACM": "before breakfast", "ACD": "before lunch",
    "ACV": "before the evening meal", "PC": "after a meal", "PCM": "after breakfast",
    "PCD": "after lunch", "PCV": "after the evening meal",
}  # fmt: skip
TIMES = {1: "once", 2: "twice"}


def _per(unit: str, amount: str) -> str:
    """'every 4 hours', 'a day' (1 d), 'every 2 weeks'."""
    one, many = UNITS.get(unit, (unit, unit))
    if amount == "1":
        return f"a {one}" if one != "hour" else "an hour"
    return f"every {amount} {many}"


def _frequency(repeat: dict[str, Any]) -> str:
    frequency = number_shown(repeat.get("frequency"))
    frequency_max = number_shown(repeat.get("frequencyMax"))
    period = number_shown(repeat.get("period"))
    period_max = number_shown(repeat.get("periodMax"))
    unit = str(repeat.get("periodUnit") or "")
    if not period or not unit:
        if frequency:
            return f"{_times(frequency, frequency_max)} (no period given)"
        return ""
    span = f"{period} to {period_max}" if period_max else period
    one, many = UNITS.get(unit, (unit, unit))
    if frequency in ("", "1") and not frequency_max:
        if span == "1":
            return f"every {one}" if unit in ("s", "min", "h") else f"once {_per(unit, '1')}"
        return f"every {span} {many}"
    times = _times(frequency or "1", frequency_max)
    if span == "1":
        return f"{times} {_per(unit, '1')}"
    return f"{times} every {span} {many}"


def _times(frequency: str, frequency_max: str) -> str:
    if frequency_max:
        return f"{frequency} to {frequency_max} times"
    if frequency.isdigit() and int(frequency) in TIMES:
        return TIMES[int(frequency)]
    return f"{frequency} times"


def timing_shown(timing: Any) -> str:
    """A Timing in words: its code's words if that is all, else the repeat rules."""
    if not isinstance(timing, dict):
        return ""
    repeat: dict[str, Any] = timing["repeat"] if isinstance(timing.get("repeat"), dict) else {}
    parts: list[str] = []
    if frequency := _frequency(repeat):
        parts.append(frequency)
    days = [DAYS.get(str(d), str(d)) for d in repeat.get("dayOfWeek", []) or []]
    if days:
        parts.append("on " + ", ".join(days))
    times = [time_shown(t) for t in repeat.get("timeOfDay", []) or []]
    if [t for t in times if t]:
        parts.append("at " + ", ".join(t for t in times if t))
    events = [EVENTS.get(str(w), str(w)) for w in repeat.get("when", []) or []]
    if events:
        offset = number_shown(repeat.get("offset"))
        shift = f" (offset {offset} minutes)" if offset and offset != "0" else ""
        parts.append(" and ".join(events) + shift)
    if duration := number_shown(repeat.get("duration")):
        unit = UNITS.get(str(repeat.get("durationUnit") or ""), ("", ""))[1]
        most = number_shown(repeat.get("durationMax"))
        parts.append(f"each over {duration}{f' to {most}' if most else ''} {unit}".rstrip())
    if count := number_shown(repeat.get("count")):
        most = number_shown(repeat.get("countMax"))
        parts.append(f"for {count}{f' to {most}' if most else ''} doses")
    if isinstance(repeat.get("boundsDuration"), dict):
        bounds = repeat["boundsDuration"]
        amount = number_shown(bounds.get("value"))
        code = str(bounds.get("code") or "")
        unit = UNITS[code][0 if amount == "1" else 1] if code in UNITS else unit_of(bounds)
        if amount:
            parts.append(f"for {amount} {unit}".rstrip())
    elif isinstance(repeat.get("boundsRange"), dict):
        parts.append(f"for {range_shown(repeat['boundsRange'])}")
    elif isinstance(repeat.get("boundsPeriod"), dict) and (
        bounds_text := period_shown(repeat["boundsPeriod"])
    ):
        parts.append(bounds_text)
    events_on = [date_shown(e) for e in timing.get("event", []) or []]
    if [e for e in events_on if e]:
        parts.append("on " + ", ".join(e for e in events_on if e))
    code = text_of(timing.get("code"))
    if code and not parts:
        return code
    if code:
        parts.append(f"({code})")
    return " ".join(parts)


def _dose(dosage: dict[str, Any]) -> tuple[str, str]:
    """(dose, rate) from the first doseAndRate that has them."""
    dose = rate = ""
    for item in dosage.get("doseAndRate", []) or []:
        if not isinstance(item, dict):
            continue
        kind = text_of(item.get("type"))
        found = quantity_shown(item.get("doseQuantity"), needs_unit=False) or range_shown(
            item.get("doseRange")
        )
        if found and not dose:
            dose = found + (" (calculated)" if kind.lower() == "calculated" else "")
        found_rate = (
            quantity_shown(item.get("rateQuantity"), needs_unit=False)
            or _ratio(item.get("rateRatio"))
            or range_shown(item.get("rateRange"))
        )
        if found_rate and not rate:
            rate = found_rate
    return dose, rate


def _ratio(value: Any) -> str:
    """A Ratio of amount per time: "30 mL a day", "60 mL in 24 hours", "5 mg per 5 mL"."""
    if not isinstance(value, dict):
        return ""
    top = quantity_shown(value.get("numerator"), needs_unit=False)
    denominator = value.get("denominator")
    if not top:
        return ""
    if isinstance(denominator, dict):
        amount = number_shown(denominator.get("value"))
        code = str(denominator.get("code") or denominator.get("unit") or "")
        if code in UNITS and amount:
            span = _per(code, "1") if amount == "1" else f"in {amount} {UNITS[code][1]}"
            return f"{top} {span}"
        if bottom := quantity_shown(denominator, needs_unit=False):
            return f"{top} per {bottom}"
    return top


def dosage_shown(dosage: Any) -> str:
    """One Dosage from its structured fields; "" when it has none (text alone)."""
    if not isinstance(dosage, dict):
        return ""
    dose, rate = _dose(dosage)
    main = [dose]
    if rate:
        main.append(f"at {rate}")
    main.append(timing_shown(dosage.get("timing")))
    if dosage.get("asNeededBoolean") is True:
        main.append("as needed")
    elif reason := text_of(dosage.get("asNeededCodeableConcept")):
        main.append(f"as needed for {reason}")
    parts = [" ".join(p for p in main if p)]
    for label, key in (("route", "route"), ("site", "site"), ("method", "method")):
        if words := text_of(dosage.get(key)):
            parts.append(f"{label}: {words}")
    if most := _ratio(dosage.get("maxDosePerPeriod")):
        parts.append(f"maximum {most}")
    if most := quantity_shown(dosage.get("maxDosePerAdministration"), needs_unit=False):
        parts.append(f"maximum {most} a dose")
    if most := quantity_shown(dosage.get("maxDosePerLifetime"), needs_unit=False):
        parts.append(f"maximum {most} in a lifetime")
    if words := texts_of(dosage.get("additionalInstruction")):
        parts.append(words)
    return "; ".join(p for p in parts if p)
