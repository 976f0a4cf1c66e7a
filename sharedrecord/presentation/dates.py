"""FHIR dates and date-times as a page shows them: precision kept, UK time.

A FHIR date may be a year ("2015"), a year and month ("2015-03"), a day
("2015-03-03") or a date-time with its offset. A clinician reads "1 Jan
2015" as a known day, so a partial date is shown only as precisely as it was
sent: "2015", "Mar 2015", "3 Mar 2015". A date-time is an instant: it is
shown in Europe/London (GMT or BST, whichever applied then), to the minute.
A date is a calendar day and is never moved between zones.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any, Literal

LONDON = zoneinfo.ZoneInfo("Europe/London")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
Precision = Literal["year", "month", "day", "minute"]

_YEAR = re.compile(r"^(\d{4})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_TIME = re.compile(r"^(\d{2}):(\d{2})(:\d{2}(\.\d+)?)?$")


@dataclass(frozen=True)
class FhirDate:
    """One FHIR date or date-time: what was sent, how precise it is, and when it starts."""

    sent: str
    precision: Precision
    start: datetime.datetime  # aware; for a partial date, its first moment in UK time
    local: datetime.datetime  # `start` in Europe/London (a date's own day, unmoved)

    @property
    def shown(self) -> str:
        """ "2015", "Mar 2015", "3 Mar 2015" or "3 Mar 2015 14:05" (UK time)."""
        when = self.local
        if self.precision == "year":
            return f"{when.year:04d}"
        if self.precision == "month":
            return f"{MONTHS[when.month - 1]} {when.year:04d}"
        day = f"{when.day} {MONTHS[when.month - 1]} {when.year:04d}"
        if self.precision == "day":
            return day
        return f"{day} {when.hour:02d}:{when.minute:02d}"

    @property
    def last_day(self) -> datetime.date:
        """The last calendar day (UK) this value may mean: the end of its year or month."""
        day = self.local.date()
        if self.precision == "year":
            return datetime.date(day.year, 12, 31)
        if self.precision == "month":
            following = datetime.date(day.year + day.month // 12, day.month % 12 + 1, 1)
            return following - datetime.timedelta(days=1)
        return day

    @property
    def end(self) -> datetime.datetime:
        """The last moment this value may mean (a partial date covers its whole span)."""
        if self.precision == "minute":
            return self.start
        after = self.last_day + datetime.timedelta(days=1)
        return datetime.datetime(after.year, after.month, after.day, tzinfo=LONDON)


def fhir_date(value: Any) -> FhirDate | None:
    """Read a FHIR date, dateTime or instant; None for anything else (never an error).

    A date-time without an offset is invalid FHIR; it is read as UTC, as
    ingestion reads it for the entry's date, so the page and the ordering agree.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if match := _YEAR.match(text):
            local = datetime.datetime(int(match[1]), 1, 1, tzinfo=LONDON)
            return FhirDate(value, "year", local, local)
        if match := _MONTH.match(text):
            local = datetime.datetime(int(match[1]), int(match[2]), 1, tzinfo=LONDON)
            return FhirDate(value, "month", local, local)
        if match := _DAY.match(text):
            local = datetime.datetime(int(match[1]), int(match[2]), int(match[3]), tzinfo=LONDON)
            return FhirDate(value, "day", local, local)
        if "T" not in text:
            return None
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return FhirDate(value, "minute", moment, moment.astimezone(LONDON))


def date_shown(value: Any) -> str:
    """A FHIR date or date-time as the page shows it, or "" when there is none."""
    parsed = fhir_date(value)
    return parsed.shown if parsed else ""


def time_shown(value: Any) -> str:
    """A FHIR time ("14:05:00") as "14:05"; a time of day has no zone to move."""
    if isinstance(value, str) and (match := _TIME.match(value.strip())):
        return f"{match[1]}:{match[2]}"
    return ""


def period_shown(period: Any) -> str:
    """A Period: "3 Mar 2015 to 5 Mar 2015", "from 3 Mar 2015", "until 5 Mar 2015"."""
    if not isinstance(period, dict):
        return ""
    start, end = date_shown(period.get("start")), date_shown(period.get("end"))
    if start and end:
        return f"{start} to {end}"
    if start:
        return f"from {start}"
    if end:
        return f"until {end}"
    return ""


def period_ended(period: Any, *, now: datetime.datetime) -> bool:
    """True when a Period has an end that is past (a partial end lasts to its last day)."""
    end = fhir_date(period.get("end")) if isinstance(period, dict) else None
    return end is not None and end.end <= now


def period_not_started(period: Any, *, now: datetime.datetime) -> bool:
    """True when a Period starts after now."""
    start = fhir_date(period.get("start")) if isinstance(period, dict) else None
    return start is not None and start.start > now


@dataclass(frozen=True)
class Death:
    """The date of death as a page shows it, and the age then ("42", "41 or 42" or "")."""

    date: str
    age: str


def death_of(deceased_at: str, birth_date: datetime.date | None) -> Death:
    """When someone died and how old they were, from a FHIR deceasedDateTime as sent.

    The age is exact when both days are known; with a partial date of death
    it is the range the dates allow ("41 or 42"), never a guess.
    """
    died = fhir_date(deceased_at)
    if died is None:
        return Death("", "")
    # The banner gives the day (in UK time); the time of death is in the source's record.
    day = dataclasses.replace(died, precision="day").shown if died.precision == "minute" else ""
    shown = day or died.shown
    if birth_date is None:
        return Death(shown, "")
    earliest, latest = died.local.date(), died.last_day

    def years(on: datetime.date) -> int:
        return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))

    youngest, oldest = years(earliest), years(latest)
    if oldest < 0:
        return Death(shown, "")
    age = str(youngest) if youngest == oldest else f"{max(youngest, 0)} or {oldest}"
    return Death(shown, age)
