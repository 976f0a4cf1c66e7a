"""One stored resource as a page row: its title, qualifiers, date and every element shown.

What each type shows is the table in types.py; this module renders it. Dates
come from the resource's own strings (dates.py), so a partial date keeps its
precision and a date-time is shown in UK time.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sharedrecord.presentation.dates import (
    date_shown,
    fhir_date,
    period_ended,
    period_not_started,
    period_shown,
)
from sharedrecord.presentation.dosage import dosage_shown
from sharedrecord.presentation.types import (
    CODE_WORDS,
    COURSE_WORDS,
    DATE_LABELS,
    SECTION_LABELS,
    SETTING_DISPLAYS,
    SETTING_WORDS,
    STATUS_WORDS,
    TYPES,
    Shows,
    TypeView,
)
from sharedrecord.presentation.values import (
    choice_shown,
    codes_of,
    number_of,
    number_shown,
    quantity_shown,
    range_shown,
    result_of,
    text_of,
    texts_of,
)

# What each "no known allergy" code says, and what it leaves open (finding 5: the
# code's meaning is neither narrowed nor widened).
NO_KNOWN_ALLERGIES: dict[str, tuple[str, str]] = {
    "716186003": ("No known allergies", ""),
    "409137002": (
        "No known drug allergies",
        "This covers medicines only: it says nothing about food or other allergies.",
    ),
    "429625007": (
        "No known food allergies",
        "This covers food only: it says nothing about medicines or other allergies.",
    ),
    "428607008": (
        "No known environmental allergies",
        "This covers environmental allergies only: it says nothing about medicines or food.",
    ),
}
NO_KNOWN_ALLERGY_CODES = frozenset(NO_KNOWN_ALLERGIES)
ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})
CURRENT_MEDICATION = frozenset({"active", "intended", "on-hold"})
UPCOMING_APPOINTMENT = frozenset({"proposed", "pending", "booked", "arrived", "waitlist"})
# Verification statuses that mean the condition is not (or not known to be) there.
NOT_A_PROBLEM = frozenset({"refuted", "entered-in-error"})
ABNORMAL_INTERPRETATIONS = frozenset({"H", "HH", "HU", "L", "LL", "LU", "A", "AA", "POS", "<", ">"})
# Resources whose elements link to results shown on their row.
LINKING_ELEMENTS = {"DiagnosticReport": "result", "Observation": "hasMember"}


@dataclass(frozen=True)
class ReferenceRange:
    low: float | None
    high: float | None
    text: str


@dataclass(frozen=True)
class Qualifier:
    """Words beside an item's title that change what it means, and how loudly (a tag colour)."""

    text: str
    tone: str


@dataclass(frozen=True)
class Detail:
    """One labelled element of an item; `entry` names a linked item shown here (audited)."""

    label: str
    value: str
    entry: str = ""
    abnormal: bool = False


# A date shown to the day ("5 Jun 2018"), not only a month or a year.
_FULL_DAY = re.compile(r"^\d{1,2} [A-Z][a-z]{2} \d{4}")
# A day and a time ("19 Nov 2026 10:00"), and the details that end an item's period.
_DAY_AND_TIME = re.compile(r"^(\d{1,2} [A-Z][a-z]{2} \d{4}) (\d{2}:\d{2})$")
_END_LABELS = frozenset({"Ended", "Ends"})


@dataclass
class ShownEntry:
    """One item as a page shows it, with where it came from."""

    public_id: str
    resource_type: str
    section: str
    title: str
    when: datetime.datetime | None
    status: str
    source_name: str
    source_ods: str
    updated_at: datetime.datetime
    when_shown: str = ""
    details: list[Detail] = field(default_factory=list)
    qualifiers: list[Qualifier] = field(default_factory=list)
    code: str = ""
    result: str = ""
    value: float | None = None
    unit: str = ""
    reference: ReferenceRange | None = None
    abnormal: bool = False
    sensitive: bool = False
    has_document: bool = False
    current: bool = True  # False once its period has ended (an alert that no longer applies)
    verification: str = ""
    codes: list[str] = field(default_factory=list)  # "system|code" of every coding it holds
    # Whether `when_shown` is the item's start (its type's first date path), not a fallback.
    when_is_start: bool = False

    @property
    def section_label(self) -> str:
        return SECTION_LABELS.get(self.section, self.section)

    @property
    def date_label(self) -> str:
        """What the item's date means in its section: "Onset", "Taken", "Started", ..."""
        return DATE_LABELS.get(self.section, "Date")

    @property
    def date_in_details(self) -> bool:
        """Whether a detail the summary lists already says the item's date.

        Only a detail that means the same date: one with the item's own date label
        ("Onset: 5 Jun 2018"), or a period starting then ("Taken: from 13 Sep 2018", which
        is when a medicine started). A partial date ("2020") is always said.
        """
        return self._says_date(self.summary_details)

    def _says_date(self, details: list[Detail]) -> bool:
        when = self.when_shown
        if not _FULL_DAY.search(when):
            return False
        for detail in details:
            if detail.label == self.date_label and detail.value == when:
                return True
            if detail.value == f"from {when}" or detail.value.startswith(f"{when} to "):
                return True
        return False

    @property
    def same_day_end(self) -> Detail | None:
        """The detail ending the item later on the day it starts ("Ended: 19 Nov 2026 11:00").

        None unless the item's date is its start (not a fallback such as when it was
        created), both say a time, the end is not before the start, and no other detail
        already says the date (the date line would then be left off, and the end with it).
        """
        start = _DAY_AND_TIME.match(self.when_shown)
        if start is None or not self.when_is_start or self._says_date(self.details):
            return None
        for detail in self.details:
            end = _DAY_AND_TIME.match(detail.value)
            if (
                detail.label in _END_LABELS
                and end is not None
                and end.group(1) == start.group(1)
                and end.group(2) >= start.group(2)
            ):
                return detail
        return None

    @property
    def when_line(self) -> str:
        """The date a summary line says: "19 Nov 2026 10:00 to 11:00" when it ends that day."""
        end = self.same_day_end
        if end is None:
            return self.when_shown
        return f"{self.when_shown} to {_end_time(end)}"

    @property
    def summary_details(self) -> list[Detail]:
        """The details the summary lists under the item's title.

        A same-day end is said in the date (`when_line`); a care plan gives its period
        only (its activities, goals and notes are on the care plans page, linked from
        the summary). A consent, filed with care plans, says its decision in full.
        """
        if self.resource_type == "CarePlan":
            return [d for d in self.details if d.label == "Period"]
        end = self.same_day_end
        return [d for d in self.details if d is not end]

    @property
    def linked_entries(self) -> list[str]:
        """Public ids of the other items whose content this row shows (for the audit)."""
        return [d.entry for d in self.details if d.entry]


@dataclass(frozen=True)
class _Context:
    resource: dict[str, Any]
    linked: Mapping[str, ShownEntry]
    now: datetime.datetime


def _get(resource: Any, path: str) -> Any:
    value = resource
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [value] if value is not None else []


# ------------------------------------------------------------------ renderers, by kind


Rows = list[Detail]


def _one(label: str, text: str) -> Rows:
    return [Detail(label, text)] if text else []


def _string(value: Any, label: str, ctx: _Context) -> Rows:
    if isinstance(value, Decimal):  # a decimal read with its precision (sharedrecord.fhirjson)
        return _one(label, number_shown(value))
    return _one(label, str(value).strip() if isinstance(value, str | int | float) else "")


def _concept(value: Any, label: str, ctx: _Context) -> Rows:
    return _one(label, text_of(value))


def _concepts(value: Any, label: str, ctx: _Context) -> Rows:
    return _one(label, texts_of(_list(value)))


def _setting(value: Any, label: str, ctx: _Context) -> Rows:
    """A care setting (Encounter.class, a Coding) in plain English, from its code or display."""
    if not isinstance(value, dict):
        return []
    code = str(value.get("code") or "")
    display = str(value.get("display") or "").strip()
    if code in SETTING_WORDS:
        return [Detail(label, SETTING_WORDS[code])]
    if display.lower() in SETTING_DISPLAYS:
        return [Detail(label, SETTING_WORDS[SETTING_DISPLAYS[display.lower()]])]
    return _one(label, text_of(value))


def _course(value: Any, label: str, ctx: _Context) -> Rows:
    """Repeat or acute, in a GP's words, from the course's code (else as the sender wrote it)."""
    for code in sorted(codes_of(value)):
        if code in COURSE_WORDS:
            return [Detail(label, COURSE_WORDS[code])]
    return _one(label, text_of(value))


def _extensions(value: Any, ending: str) -> list[dict[str, Any]]:
    return [
        e for e in _list(value)
        if isinstance(e, dict) and str(e.get("url", "")).endswith(ending)
    ]  # fmt: skip


def _repeat_information(value: Any, label: str, ctx: _Context) -> Rows:
    """UK Core's repeat information: how many times issued, and until when it is authorised."""
    rows = []
    for repeat in _extensions(value, "Extension-UKCore-MedicationRepeatInformation"):
        parts = {
            str(p.get("url")): p for p in _list(repeat.get("extension")) if isinstance(p, dict)
        }
        issued = number_shown(
            (parts.get("numberOfPrescriptionsIssued") or {}).get("valueUnsignedInt")
        )
        expiry = date_shown((parts.get("authorisationExpiryDate") or {}).get("valueDateTime"))
        words = []
        if issued != "":
            words.append(f"{issued} time{'' if issued == '1' else 's'}")
        if expiry:
            words.append(f"authorised until {expiry}")
        if words:
            rows.append(Detail(label, ", ".join(words)))
    return rows


def _last_issued(value: Any, label: str, ctx: _Context) -> Rows:
    """UK Core's last issue date of a medicine (MedicationStatementLastIssueDate)."""
    for extension in _extensions(value, "MedicationStatementLastIssueDate"):
        if when := date_shown(extension.get("valueDateTime")):
            return [Detail(label, when)]
    return []


def _code(value: Any, label: str, ctx: _Context) -> Rows:
    if not isinstance(value, str) or not value:
        return []
    return [Detail(label, CODE_WORDS.get(value, value))]


def _codes(value: Any, label: str, ctx: _Context) -> Rows:
    words = [CODE_WORDS.get(v, v) for v in _list(value) if isinstance(v, str) and v]
    return _one(label, ", ".join(words))


def _date(value: Any, label: str, ctx: _Context) -> Rows:
    return _one(label, date_shown(value))


def _period(value: Any, label: str, ctx: _Context) -> Rows:
    return _one(label, period_shown(value))


def _quantity(value: Any, label: str, ctx: _Context) -> Rows:
    return _one(label, quantity_shown(value, needs_unit=False))


def _reference(value: Any, label: str, ctx: _Context) -> Rows:
    return _one(label, str(value.get("display") or "") if isinstance(value, dict) else "")


def _references(value: Any, label: str, ctx: _Context) -> Rows:
    names = [
        str(r.get("display")) for r in _list(value) if isinstance(r, dict) and r.get("display")
    ]
    return _one(label, ", ".join(names))


def _notes(value: Any, label: str, ctx: _Context) -> Rows:
    rows = []
    for note in _list(value):
        if isinstance(note, dict) and note.get("text"):
            when = date_shown(note.get("time"))
            rows.append(Detail(label, str(note["text"]) + (f" ({when})" if when else "")))
    return rows


def _dosage(value: Any, label: str, ctx: _Context) -> Rows:
    """Each Dosage from its structured fields, and the sender's own words beside it."""
    rows = []
    for dosage in _list(value):
        if not isinstance(dosage, dict):
            continue
        structured = dosage_shown(dosage)
        text = str(dosage.get("text") or "").strip()
        if structured:
            rows.append(Detail(label, structured))
        if text:
            rows.append(Detail(f"{label} as written" if structured else label, text))
        if words := str(dosage.get("patientInstruction") or "").strip():
            rows.append(Detail("Instructions for the person", words))
    return rows


def _supply(value: Any, label: str, ctx: _Context) -> Rows:
    if not isinstance(value, dict):
        return []
    parts = []
    if amount := quantity_shown(value.get("quantity"), needs_unit=False):
        parts.append(amount)
    if days := quantity_shown(value.get("expectedSupplyDuration"), needs_unit=False):
        parts.append(f"{days} supply")
    if (repeats := number_shown(value.get("numberOfRepeatsAllowed"))) != "":
        parts.append(f"{repeats} repeats allowed")
    if valid := period_shown(value.get("validityPeriod")):
        parts.append(f"valid {valid}")
    return _one(label, ", ".join(parts))


def _choice(value: Any, label: str, ctx: _Context, prefix: str = "") -> Rows:
    return _one(label, choice_shown(ctx.resource, prefix, needs_unit=False))


def _result(value: Any, label: str, ctx: _Context) -> Rows:
    return _one(label, result_of(ctx.resource).text)


def _components(value: Any, label: str, ctx: _Context) -> Rows:
    rows = []
    for component in _list(value):
        if not isinstance(component, dict):
            continue
        name = text_of(component.get("code")) or label
        text = result_of(component).text or "no value sent"
        if flags := texts_of(component.get("interpretation")):
            text += f" ({flags})"
        if ranges := [_range_text(r) for r in _list(component.get("referenceRange"))]:
            text += f"; reference range {'; '.join(r for r in ranges if r)}" if any(ranges) else ""
        rows.append(Detail(name, text, abnormal=_abnormal_codes(component)))
    return rows


def _range_text(rng: Any) -> str:
    if not isinstance(rng, dict):
        return ""
    if rng.get("text"):
        return str(rng["text"])
    low, high = rng.get("low"), rng.get("high")
    low_text = quantity_shown(low, needs_unit=False)
    high_text = quantity_shown(high, needs_unit=False)
    if low_text and high_text:
        return f"{low_text} to {high_text}"
    if high_text:
        return f"up to {high_text}"
    if low_text:
        return f"from {low_text}"
    return ""


def _ranges(value: Any, label: str, ctx: _Context) -> Rows:
    rows = []
    for rng in _list(value):
        text = _range_text(rng)
        if not text or not isinstance(rng, dict):
            continue
        qualifiers = [q for q in (text_of(rng.get("type")), texts_of(rng.get("appliesTo"))) if q]
        if age := range_shown(rng.get("age")):
            qualifiers.append(f"age {age}")
        rows.append(Detail(f"{label} ({', '.join(qualifiers)})" if qualifiers else label, text))
    return rows


def _reactions(value: Any, label: str, ctx: _Context) -> Rows:
    rows = []
    for reaction in _list(value):
        if not isinstance(reaction, dict):
            continue
        words = texts_of(reaction.get("manifestation")) or str(reaction.get("description") or "")
        extra = []
        if substance := text_of(reaction.get("substance")):
            extra.append(f"to {substance}")
        if onset := date_shown(reaction.get("onset")):
            extra.append(onset)
        if route := text_of(reaction.get("exposureRoute")):
            extra.append(f"route {route}")
        shown = ", ".join(e for e in extra if e)
        if words or shown:
            rows.append(Detail(label, f"{words} ({shown})" if words and shown else words or shown))
        if reaction.get("severity"):
            rows.append(Detail("Severity", CODE_WORDS.get(str(reaction["severity"]), "")))
    return rows


def _stages(value: Any, label: str, ctx: _Context) -> Rows:
    words = [text_of(s.get("summary")) for s in _list(value) if isinstance(s, dict)]
    return _one(label, ", ".join(w for w in words if w))


def _diagnoses(value: Any, label: str, ctx: _Context) -> Rows:
    rows = []
    for item in _list(value):
        if not isinstance(item, dict):
            continue
        name = str((item.get("condition") or {}).get("display") or "")
        use = text_of(item.get("use"))
        rank = number_shown(item.get("rank"))
        extra = ", ".join(x for x in (use, f"rank {rank}" if rank else "") if x)
        if name:
            rows.append(Detail(label, f"{name} ({extra})" if extra else name))
    return rows


def _locations(value: Any, label: str, ctx: _Context) -> Rows:
    names = []
    for item in _list(value):
        if isinstance(item, dict) and isinstance(item.get("location"), dict):
            name = str(item["location"].get("display") or "")
            when = period_shown(item.get("period"))
            if name:
                names.append(f"{name} ({when})" if when else name)
    return _one(label, ", ".join(names))


def _participants(value: Any, label: str, ctx: _Context) -> Rows:
    rows = []
    for item in _list(value):
        if not isinstance(item, dict) or not isinstance(item.get("actor"), dict):
            continue
        name = str(item["actor"].get("display") or "")
        if name:
            status = str(item.get("status") or "")
            words = CODE_WORDS.get(status, status).lower()
            rows.append(Detail(label, f"{name} ({words})" if words else name))
    return rows


def _team_members(value: Any, label: str, ctx: _Context) -> Rows:
    rows = []
    for member in _list(value):
        if isinstance(member, dict):
            who = str((member.get("member") or {}).get("display", ""))
            role = texts_of(member.get("role"))
            if who or role:
                rows.append(Detail(label, ", ".join(x for x in (who, role) if x)))
    return rows


def _telecom(value: Any, label: str, ctx: _Context) -> Rows:
    rows = []
    for telecom in _list(value):
        if isinstance(telecom, dict) and telecom.get("value"):
            system = str(telecom.get("system") or "contact").capitalize()
            use = f" ({telecom['use']})" if telecom.get("use") else ""
            rows.append(Detail(system, f"{telecom['value']}{use}"))
    return rows


def _addresses(value: Any, label: str, ctx: _Context) -> Rows:
    rows = []
    for address in _list(value):
        if not isinstance(address, dict):
            continue
        text = address.get("text") or ", ".join(
            str(p)
            for p in [*(address.get("line") or []), address.get("city"), address.get("postalCode")]
            if p
        )
        if text:
            rows.append(Detail(label, str(text)))
    return rows


def _activities(value: Any, label: str, ctx: _Context) -> Rows:
    rows = []
    for activity in _list(value):
        if not isinstance(activity, dict):
            continue
        detail: dict[str, Any] = (
            activity["detail"] if isinstance(activity.get("detail"), dict) else {}
        )
        words = (
            text_of(detail.get("code"))
            or str(detail.get("description") or "")
            or str((activity.get("reference") or {}).get("display") or "")
        )
        extra = []
        if status := str(detail.get("status") or ""):
            extra.append(STATUS_WORDS.get(status, (status, ""))[0].lower())
        if detail.get("doNotPerform") is True:
            extra.append("do not perform")
        when = period_shown(detail.get("scheduledPeriod")) or str(
            detail.get("scheduledString") or ""
        )
        if when:
            extra.append(when)
        if words:
            rows.append(Detail(label, f"{words} ({', '.join(extra)})" if extra else words))
    return rows


def _protocol(value: Any, label: str, ctx: _Context) -> Rows:
    rows = []
    for item in _list(value):
        if not isinstance(item, dict):
            continue
        dose = number_shown(item.get("doseNumberPositiveInt")) or str(
            item.get("doseNumberString") or ""
        )
        series = number_shown(item.get("seriesDosesPositiveInt")) or str(
            item.get("seriesDosesString") or ""
        )
        diseases = texts_of(item.get("targetDisease"))
        text = f"{dose} of {series}" if dose and series else dose
        if diseases:
            text = f"{text} ({diseases})" if text else diseases
        if text:
            rows.append(Detail(label, text))
    return rows


def _primary_source(value: Any, label: str, ctx: _Context) -> Rows:
    if value is not False:
        return []
    origin = text_of(ctx.resource.get("reportOrigin"))
    return [
        Detail(
            label, "Reported, not recorded by whoever gave it" + (f" ({origin})" if origin else "")
        )
    ]


def _immunisation_reactions(value: Any, label: str, ctx: _Context) -> Rows:
    rows = []
    for item in _list(value):
        if not isinstance(item, dict):
            continue
        what = str((item.get("detail") or {}).get("display") or "reaction")
        when = date_shown(item.get("date"))
        reported = " (reported by the person)" if item.get("reported") is True else ""
        rows.append(Detail(label, f"{what}{f', {when}' if when else ''}{reported}"))
    return rows


def _linked(value: Any, label: str, ctx: _Context) -> Rows:
    """The results a report (or a panel) links to, each with its value, as the source sent."""
    rows = []
    not_here = []
    contained = {
        f"#{c.get('id')}": c for c in _list(ctx.resource.get("contained")) if isinstance(c, dict)
    }
    for ref in _list(value):
        if not isinstance(ref, dict):
            continue
        target = str(ref.get("reference") or "")
        if target in contained:
            inner = contained[target]
            rows.append(Detail(text_of(inner.get("code")) or label, result_of(inner).text))
        elif (shown := ctx.linked.get(target)) is not None:
            text = shown.result or "no value sent"
            marks = [q.text for q in shown.qualifiers]
            if shown.abnormal:
                marks.insert(0, "outside range")
            if shown.sensitive:
                marks.append("sensitive")
            if marks:
                text += f" ({', '.join(marks)})"
            rows.append(Detail(shown.title, text, entry=shown.public_id, abnormal=shown.abnormal))
        else:
            not_here.append(str(ref.get("display") or ""))
    named = [n for n in not_here if n]
    if named:
        rows.append(Detail(f"{label}, not shown here", ", ".join(named)))
    if unnamed := len(not_here) - len(named):
        rows.append(Detail(f"{label}, not shown here", f"{unnamed} more named by the source"))
    return rows


RENDERERS: dict[str, Callable[[Any, str, _Context], Rows]] = {
    "string": _string, "concept": _concept, "setting": _setting, "concepts": _concepts,
    "code": _code, "course": _course, "repeat_information": _repeat_information,
    "last_issued": _last_issued,
    "codes": _codes, "date": _date, "period": _period, "quantity": _quantity,
    "reference": _reference, "references": _references, "notes": _notes, "dosage": _dosage,
    "supply": _supply, "result": _result, "components": _components, "ranges": _ranges,
    "reactions": _reactions, "stages": _stages, "diagnoses": _diagnoses,
    "locations": _locations, "participants": _participants, "team_members": _team_members,
    "telecom": _telecom, "addresses": _addresses, "activities": _activities,
    "protocol": _protocol, "primary_source": _primary_source,
    "immunisation_reactions": _immunisation_reactions, "linked": _linked,
}  # fmt: skip


def _rows(show: Shows, ctx: _Context) -> Rows:
    if show.kind == "choice":
        return _choice(None, show.label, ctx, prefix=show.path)
    return RENDERERS[show.kind](_get(ctx.resource, show.path), show.label, ctx)


# ------------------------------------------------------------------ titles, dates, qualifiers


def _person_name(resource: dict[str, Any]) -> str:
    for name in _list(resource.get("name")):
        if isinstance(name, dict):
            given = " ".join(str(g) for g in name.get("given", []) or [])
            text = name.get("text") or f"{given} {name.get('family', '')}".strip()
            if text:
                return str(text)
    return ""


def title_of(resource: dict[str, Any], resource_type: str) -> str:
    view = TYPES.get(resource_type)
    if view is None:
        return text_of(resource.get("code")) or resource_type
    for path in view.title:
        if path == "name":
            if words := _person_name(resource) or (
                str(resource["name"]).strip() if isinstance(resource.get("name"), str) else ""
            ):
                return words
            continue
        for value in _list(resource.get(path)):
            if isinstance(value, str) and value.strip():
                return value.strip()
            if isinstance(value, dict) and (
                words := text_of(value) or str(value.get("display") or "")
            ):
                return words
    return view.fallback_title


def _end_time(end: Detail) -> str:
    """The time of an end detail ("11:00" of "19 Nov 2026 11:00")."""
    found = _DAY_AND_TIME.match(end.value)
    return found.group(2) if found else end.value


def when_of(resource: dict[str, Any], view: TypeView | None) -> str:
    """The item's date as sent, shown with its precision (the entry's own date paths)."""
    for path in view.when if view else ():
        if fhir_date(_get(resource, path)) is not None:
            return date_shown(_get(resource, path))
    return ""


def _status_words(code: str) -> Qualifier:
    words, tone = STATUS_WORDS.get(code, (code.replace("-", " ").capitalize(), "orange"))
    return Qualifier(words, tone)


# The Period that says when an item applies, for the types that have one.
PERIODS = {
    "Flag": "period", "CarePlan": "period", "CareTeam": "period", "RelatedPerson": "period",
    "MedicationStatement": "effectivePeriod",
}  # fmt: skip


def qualifiers_of(
    resource: dict[str, Any], resource_type: str, *, now: datetime.datetime
) -> list[Qualifier]:
    """The words that change what this item means, loudest first."""
    view = TYPES.get(resource_type)
    quiet = view.quiet if view else frozenset()
    found: list[Qualifier] = []
    if resource_type in ("Condition", "AllergyIntolerance"):
        for element in ("verificationStatus", "clinicalStatus"):
            for code in sorted(codes_of(resource.get(element)) - quiet - {"None"}):
                found.append(_status_words(code))
    elif isinstance(resource.get("status"), str) and resource["status"] not in quiet:
        found.append(_status_words(resource["status"]))
    if resource.get("active") is False:
        found.append(Qualifier("Inactive", "grey"))
    if resource.get("doNotPerform") is True:
        found.append(Qualifier("Do not perform", "red"))
    if resource_type == "AllergyIntolerance" and resource.get("criticality") == "high":
        found.append(Qualifier("High criticality", "red"))
    if resource_type == "DocumentReference" and resource.get("docStatus") not in (None, "final"):
        found.append(_status_words(str(resource["docStatus"])))
    period = resource.get(PERIODS.get(resource_type, ""))
    if isinstance(period, dict) and period_ended(period, now=now):
        found.append(Qualifier(f"Ended {date_shown(period.get('end'))}", "grey"))
    elif isinstance(period, dict) and period_not_started(period, now=now):
        found.append(Qualifier(f"Starts {date_shown(period.get('start'))}", "orange"))
    order = {"red": 0, "orange": 1, "grey": 2}
    return sorted(found, key=lambda q: order.get(q.tone, 1))


def _abnormal_codes(element: dict[str, Any]) -> bool:
    flags = {c for i in _list(element.get("interpretation")) for c in codes_of(i)}
    return bool(flags & ABNORMAL_INTERPRETATIONS)


def _observation(resource: dict[str, Any], shown: ShownEntry) -> None:
    """The numbers a chart and the out-of-range flag need, and the result in one line."""
    result = result_of(resource)
    shown.value, shown.unit = result.number, result.unit
    components = [
        f"{text_of(c.get('code'))} {result_of(c).text}".strip()
        for c in _list(resource.get("component"))
        if isinstance(c, dict)
    ]
    members = len(_list(resource.get("hasMember")))
    panel = f"a panel of {members} results" if members else ""
    shown.result = result.text or ", ".join(c for c in components if c) or panel
    for rng in _list(resource.get("referenceRange")):
        if isinstance(rng, dict):
            low, high = (
                number_of((rng.get("low") or {}).get("value")),
                number_of((rng.get("high") or {}).get("value")),
            )
            shown.reference = ReferenceRange(low, high, _range_text(rng))
            break
    out_of_range = (
        shown.value is not None
        and shown.reference is not None
        and (
            (shown.reference.low is not None and shown.value < shown.reference.low)
            or (shown.reference.high is not None and shown.value > shown.reference.high)
        )
    )
    shown.abnormal = (
        _abnormal_codes(resource)
        or out_of_range
        or any(_abnormal_codes(c) for c in _list(resource.get("component")) if isinstance(c, dict))
    )


def linked_references(resource_type: str, resource: dict[str, Any]) -> list[str]:
    """The references (as sent) to other results that this item's row shows."""
    element = LINKING_ELEMENTS.get(resource_type)
    if element is None:
        return []
    return [
        str(r["reference"])
        for r in _list(resource.get(element))
        if isinstance(r, dict) and isinstance(r.get("reference"), str)
        and not r["reference"].startswith("#")
    ]  # fmt: skip


def reference_id(reference: str) -> tuple[str, str]:
    """(type, id) a reference names: "Observation/1", "urn:uuid:…", an absolute URL."""
    if reference.startswith("urn:uuid:"):
        return "", reference.removeprefix("urn:uuid:")
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return "", parts[-1]


def entry_shown(
    *,
    public_id: str,
    resource_type: str,
    section: str,
    resource: dict[str, Any],
    effective_at: datetime.datetime | None,
    status: str,
    code: str,
    source_name: str,
    source_ods: str,
    updated_at: datetime.datetime,
    sensitive: bool,
    now: datetime.datetime,
    linked: Mapping[str, ShownEntry] | None = None,
    codes: list[str] | None = None,
) -> ShownEntry:
    """The page's view of one stored resource.

    `linked` maps references (as sent) to the items they name that this
    viewer may see: a report's results are shown on its row.
    """
    view = TYPES.get(resource_type)
    start = view.when[0] if view and view.when else ""  # the path of the item's own start
    clinical = _list((resource.get("clinicalStatus") or {}).get("coding"))
    clinical_code = next(
        (str(c["code"]) for c in clinical if isinstance(c, dict) and c.get("code")), ""
    )
    shown = ShownEntry(
        public_id=public_id,
        resource_type=resource_type,
        section=section,
        title=title_of(resource, resource_type),
        when=effective_at,
        when_shown=when_of(resource, view),
        when_is_start=bool(start) and fhir_date(_get(resource, start)) is not None,
        status=clinical_code or str(resource.get("status") or "") or status,
        source_name=source_name,
        source_ods=source_ods,
        updated_at=updated_at,
        code=code,
        sensitive=sensitive,
        qualifiers=qualifiers_of(resource, resource_type, now=now),
        verification=next(iter(sorted(codes_of(resource.get("verificationStatus")))), ""),
        codes=list(codes or []),
    )
    if resource_type == "Observation":
        _observation(resource, shown)
    context = _Context(resource, linked or {}, now)
    for show in view.shows if view else ():
        shown.details.extend(_rows(show, context))
    if resource_type == "DocumentReference":
        shown.has_document = any(
            isinstance(c, dict) and isinstance(c.get("attachment"), dict)
            for c in _list(resource.get("content"))
        )
    period = resource.get(PERIODS.get(resource_type, ""))
    shown.current = not period_ended(period, now=now)
    return shown
