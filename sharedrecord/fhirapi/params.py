"""The FHIR search-parameter grammar of the read API: query strings in, typed values out.

Pure (STYLE.md section 7, "parse at the edge"): no ORM, no settings, no
network. Each parser takes the request's (name, value) pairs and returns a
frozen dataclass, or raises SearchParamError naming the parameter and the rule
it broke, never the value (a value may be an NHS number, a name or a date of
birth). The reads build their queries from the typed values only (fhir_entries.py).

What every value must be, before its own grammar is checked:
- at most MAX_VALUE_LENGTH characters, with no control characters (PostgreSQL
  refuses NUL; the others are never part of a real value);
- digits are ASCII digits: Python's int() and \\d take any Unicode digit
  ("²", "٣"), FHIR does not;
- dates are years 0001 to 9998, so every range a date covers (a year, a
  month, a day...) ends on a date Python and PostgreSQL both hold.
An empty value is ignored, as FHIR asks ("given=" searches nothing).
"""

from __future__ import annotations

import datetime
import re
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from sharedrecord.exceptions import InvalidParameter

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
MAX_VALUE_LENGTH = 1024
MAX_REPEATS = 10  # of one parameter
MAX_ALTERNATIVES = 50  # comma-separated values in one parameter
FIRST_YEAR, LAST_YEAR = 1, 9998
GENDERS = frozenset({"male", "female", "other", "unknown"})
# Parameters that take one value: a second is a 400, never a silent choice of one.
SINGLE = frozenset(
    {"patient", "_count", "_cursor", "_since", "_total", "identifier", "family", "birthdate",
     "gender", "address-postalcode"}
)  # fmt: skip

IssueType = Literal["value", "required", "not-supported", "too-costly"]
Prefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]
PREFIXES: dict[str, Prefix] = {
    "eq": "eq", "ne": "ne", "gt": "gt", "lt": "lt", "ge": "ge", "le": "le", "sa": "sa", "eb": "eb"
}  # fmt: skip


class SearchParamError(InvalidParameter):
    """A search parameter the server cannot take: its name, what is wrong, a FHIR issue type.

    The message names the parameter and the rule, never the value.
    """

    def __init__(self, parameter: str, message: str, issue: IssueType = "value") -> None:
        super().__init__(parameter, message, issue=issue)


# ------------------------------------------------------------------ typed values


@dataclass(frozen=True)
class DateParam:
    """A date search value: its prefix and the instants its precision covers, [start, end)."""

    prefix: Prefix
    start: datetime.datetime  # timezone-aware
    end: datetime.datetime  # timezone-aware, exclusive


@dataclass(frozen=True)
class Token:
    """A token search value: `code`, `system|code`, `|code` or `system|` (any code)."""

    system: str  # "" for any system
    code: str  # "" for any code in the system


@dataclass(frozen=True)
class TypeSearch:
    """A search of one resource type in one person's record.

    Repeated parameters AND together; each inner tuple is one parameter's
    comma-separated values, which OR together.
    """

    patient: str  # a FHIR id; the view decides whether it names anyone
    date: tuple[DateParam, ...] = ()
    last_updated: tuple[DateParam, ...] = ()
    code: tuple[tuple[Token, ...], ...] = ()
    category: tuple[tuple[Token, ...], ...] = ()
    status: tuple[tuple[str, ...], ...] = ()
    count: int = 0
    cursor: str = ""
    counted: bool = True  # _total: "none" skips counting the matches
    revinclude_provenance: bool = False


@dataclass(frozen=True)
class EverythingSearch:
    """Patient/<id>/$everything: since when, which types, page size, where to carry on."""

    since: datetime.datetime | None
    types: frozenset[str] | None  # None: every type the caller may read
    count: int
    cursor: str = ""
    counted: bool = True  # _total: "none" skips counting the matches


@dataclass(frozen=True)
class PatientSearch:
    """Find a person: by NHS number, or by family name and birth date (with gender, postcode)."""

    nhs_number: str = ""
    other_system: bool = False  # an identifier of another system: nobody has one here
    family: str = ""
    birth_date: datetime.date | None = None
    gender: str = ""
    postcode: str = ""


# ------------------------------------------------------------------ the searches


def parse_type_search(
    pairs: Sequence[tuple[str, str]], *, page_size: int, page_max: int, tz: datetime.tzinfo
) -> TypeSearch:
    """A type search's parameters (patient, date, category, code, status, _lastUpdated,
    _count, _cursor, _total, _revinclude); SearchParamError for the first that is wrong."""
    given = grouped(pairs)
    if "patient" not in given:
        raise SearchParamError("patient", "Search by one patient: patient=<id>.", "required")
    for value in given.get("_revinclude", []):
        if value != "Provenance:target":
            raise SearchParamError(
                "_revinclude", "Only _revinclude=Provenance:target is served.", "not-supported"
            )
    return TypeSearch(
        patient=parse_reference("patient", given["patient"][0], "Patient"),
        date=tuple(parse_date("date", v, tz=tz) for v in given.get("date", [])),
        last_updated=tuple(
            parse_date("_lastUpdated", v, tz=tz) for v in given.get("_lastUpdated", [])
        ),
        code=tuple(_tokens("code", v) for v in given.get("code", [])),
        category=tuple(_tokens("category", v) for v in given.get("category", [])),
        status=tuple(_codes("status", v) for v in given.get("status", [])),
        count=_count_of(given, page_size=page_size, page_max=page_max),
        cursor=given.get("_cursor", [""])[0],
        counted=_counted(given),
        revinclude_provenance="_revinclude" in given,
    )


def parse_everything(
    pairs: Sequence[tuple[str, str]],
    *,
    page_size: int,
    page_max: int,
    readable: frozenset[str],
) -> EverythingSearch:
    """$everything's parameters (_since, _type, _count, _cursor, _total)."""
    given = grouped(pairs)
    types: frozenset[str] | None = None
    if "_type" in given:
        asked = frozenset(t for v in given["_type"] for t in _codes("_type", v))
        if asked - readable:
            raise SearchParamError(
                "_type",
                "_type names a type this server does not serve; it serves "
                + ", ".join(sorted(readable)) + ".",
                "not-supported",
            )  # fmt: skip
        types = asked
    since = parse_instant("_since", given["_since"][0]) if "_since" in given else None
    return EverythingSearch(
        since=since,
        types=types,
        count=_count_of(given, page_size=page_size, page_max=page_max),
        cursor=given.get("_cursor", [""])[0],
        counted=_counted(given),
    )


def parse_patient_search(pairs: Sequence[tuple[str, str]], *, tz: datetime.tzinfo) -> PatientSearch:
    """Patient search: identifier (an NHS number), or family and birthdate together."""
    given = grouped(pairs)
    gender = given.get("gender", [""])[0]
    if gender and gender not in GENDERS:
        raise SearchParamError("gender", "gender takes male, female, other or unknown.")
    postcode = given.get("address-postalcode", [""])[0].strip()
    if "identifier" in given:
        system, bar, value = given["identifier"][0].rpartition("|")
        if bar and system and system != NHS_NUMBER_SYSTEM:
            # Only NHS numbers identify people here: nobody has another identifier.
            return PatientSearch(other_system=True)
        number = "".join(ch for ch in value if ch not in " -")
        if not re.fullmatch(r"[0-9]{10}", number):
            raise SearchParamError(
                "identifier",
                f"identifier takes an NHS number: {NHS_NUMBER_SYSTEM}|<10 digits>.",
            )
        return PatientSearch(nhs_number=number, gender=gender, postcode=postcode)
    family = given.get("family", [""])[0].strip()
    if family and "birthdate" in given:
        when = parse_date("birthdate", given["birthdate"][0], tz=tz)
        if when.prefix != "eq" or when.end - when.start != datetime.timedelta(days=1):
            raise SearchParamError("birthdate", "birthdate must be one day: YYYY-MM-DD.")
        return PatientSearch(
            family=family, birth_date=when.start.date(), gender=gender, postcode=postcode
        )
    raise SearchParamError(
        "identifier" if not given.get("family") else "birthdate",
        "Search by identifier (https://fhir.nhs.uk/Id/nhs-number|<NHS number>), "
        "or by family and birthdate together.",
        "required",
    )


# ------------------------------------------------------------------ one parameter


def grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """The values of each parameter, checked for what every value must be; empty ones dropped."""
    given: dict[str, list[str]] = {}
    for name, value in pairs:
        _check_text(name, value)
        if value == "":
            continue
        values = given.setdefault(name, [])
        values.append(value)
        if name in SINGLE and len(values) > 1:
            raise SearchParamError(name, f"{name} may be given only once.")
        if len(values) > MAX_REPEATS:
            raise SearchParamError(
                name, f"{name} may be repeated at most {MAX_REPEATS} times.", "too-costly"
            )
    return given


def _check_text(name: str, value: str) -> None:
    if len(value) > MAX_VALUE_LENGTH:
        raise SearchParamError(name, f"{name} is longer than {MAX_VALUE_LENGTH} characters.")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise SearchParamError(name, f"{name} contains a control character.")


def parse_count(name: str, value: str, *, page_max: int) -> int:
    """A page size: ASCII digits, capped at page_max (a larger number asks for the most)."""
    if not re.fullmatch(r"[0-9]+", value):
        raise SearchParamError(name, f"{name} must be a whole number, like 50.")
    digits = value.lstrip("0") or "0"
    # int() of thousands of digits is refused by Python: compare lengths first.
    if len(digits) > len(str(page_max)):
        return page_max
    return min(int(digits), page_max)


def _counted(given: dict[str, list[str]]) -> bool:
    """Whether the search asks for its total (_total: none, or estimate and accurate alike)."""
    value = given.get("_total", ["accurate"])[0]
    if value not in ("none", "estimate", "accurate"):
        raise SearchParamError("_total", "_total takes none, estimate or accurate.")
    return value != "none"


def _count_of(given: dict[str, list[str]], *, page_size: int, page_max: int) -> int:
    if "_count" not in given:
        return page_size
    return parse_count("_count", given["_count"][0], page_max=page_max)


FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def parse_id(value: str) -> str | None:
    """A FHIR logical id ([A-Za-z0-9-.]{1,64}), or None if the value cannot be one."""
    return value if FHIR_ID.fullmatch(value) else None


def parse_reference(name: str, value: str, resource_type: str) -> str:
    """A reference search value, `<id>` or `<Type>/<id>`: the id."""
    found = parse_id(value.removeprefix(f"{resource_type}/"))
    if found is None:
        raise SearchParamError(name, f"{name} takes an id: {name}=<id> or {resource_type}/<id>.")
    return found


def _alternatives(name: str, value: str) -> list[str]:
    parts = [part.strip() for part in value.split(",")]
    if len(parts) > MAX_ALTERNATIVES:
        raise SearchParamError(
            name, f"{name} may list at most {MAX_ALTERNATIVES} values.", "too-costly"
        )
    return [part for part in parts if part]


def _codes(name: str, value: str) -> tuple[str, ...]:
    return tuple(_alternatives(name, value))


def parse_token(name: str, value: str) -> Token:
    """One token: `code`, `system|code`, `|code` (no system: any, here) or `system|`."""
    system, bar, code = value.rpartition("|")
    if not bar:
        return Token(system="", code=value)
    if not system and not code:
        raise SearchParamError(name, f"{name} needs a code, a system|code or a system|.")
    return Token(system=system, code=code)


def _tokens(name: str, value: str) -> tuple[Token, ...]:
    return tuple(parse_token(name, part) for part in _alternatives(name, value))


# ------------------------------------------------------------------ dates

DATE = re.compile(
    r"(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb)?"
    r"(?P<year>[0-9]{4})(?:-(?P<month>[0-9]{2})(?:-(?P<day>[0-9]{2})"
    r"(?:T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})"
    r"(?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]{1,9}))?)?"
    # An unescaped "+" in a query string arrives as a space: read it as the "+" it was.
    r"(?P<zone>Z|[+\- ][0-9]{2}:[0-9]{2})?)?)?)?"
)


def parse_date(name: str, value: str, *, tz: datetime.tzinfo) -> DateParam:
    """A FHIR date search value, [prefix]YYYY[-MM[-DD[Thh:mm[:ss[.f]][zone]]]].

    Its range is the whole of its precision: `2024` is the year, `2024-02`
    the month, a time to the minute a minute. A time without a zone, and a
    date alone, are in `tz`.
    """
    found = DATE.fullmatch(value)
    if found is None:
        raise SearchParamError(
            name, f"{name} must be a FHIR date: [prefix]YYYY[-MM[-DD[Thh:mm:ss[zone]]]], with a "
            "prefix of eq, ne, gt, ge, lt, le, sa or eb.",
        )  # fmt: skip
    part = found.groupdict()
    start, end = _range(name, part, tz)
    return DateParam(prefix=PREFIXES[part["prefix"] or "eq"], start=start, end=end)


def parse_instant(name: str, value: str) -> datetime.datetime:
    """An instant: YYYY-MM-DDThh:mm:ss[.f] and a zone (Z or +hh:mm), no prefix."""
    found = DATE.fullmatch(value)
    if found is None or found["prefix"] or not found["second"] or not found["zone"]:
        raise SearchParamError(
            name, f"{name} must be an instant with a time zone, like 2024-01-31T09:30:00Z."
        )
    start, _ = _range(name, found.groupdict(), datetime.UTC)
    return start


def _range(
    name: str, part: dict[str, str | None], tz: datetime.tzinfo
) -> tuple[datetime.datetime, datetime.datetime]:
    """The instants [start, end) that a matched date value covers."""
    year = int(part["year"] or "0")
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise SearchParamError(name, f"{name} must have a year from 0001 to 9998.")
    month, day = int(part["month"] or "1"), int(part["day"] or "1")
    try:
        first = datetime.date(year, month, day)
    except ValueError as exc:
        raise SearchParamError(name, f"{name} is not a real date.") from exc
    if part["month"] is None:
        return _span(name, first, datetime.date(year + 1, 1, 1), tz)
    if part["day"] is None:
        after = datetime.date(year + month // 12, month % 12 + 1, 1)
        return _span(name, first, after, tz)
    if part["hour"] is None:
        return _span(name, first, first + datetime.timedelta(days=1), tz)
    hour, minute = int(part["hour"]), int(part["minute"] or "0")
    second = int(part["second"] or "0")
    if hour > 23 or minute > 59 or second > 59:
        raise SearchParamError(name, f"{name} is not a real time of day.")
    fraction = part["fraction"] or ""
    micro = int((fraction + "000000")[:6])
    zone = _zone(name, part["zone"]) if part["zone"] else tz
    start = datetime.datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    if fraction:
        width = datetime.timedelta(microseconds=10 ** max(0, 6 - len(fraction)))
    elif part["second"] is not None:
        width = datetime.timedelta(seconds=1)
    else:
        width = datetime.timedelta(minutes=1)
    return _held(name, start, start + width)


def _zone(name: str, text: str) -> datetime.tzinfo:
    if text == "Z":
        return datetime.UTC
    hours, minutes = int(text[1:3]), int(text[4:6])
    if minutes > 59 or hours > 14 or (hours == 14 and minutes):
        raise SearchParamError(name, f"{name} has a time zone outside -14:00 to +14:00.")
    sign = -1 if text[0] == "-" else 1
    return datetime.timezone(sign * datetime.timedelta(hours=hours, minutes=minutes))


def _span(
    name: str, first: datetime.date, after: datetime.date, tz: datetime.tzinfo
) -> tuple[datetime.datetime, datetime.datetime]:
    midnight = datetime.time()
    return _held(
        name,
        datetime.datetime.combine(first, midnight, tzinfo=tz),
        datetime.datetime.combine(after, midnight, tzinfo=tz),
    )


def _held(
    name: str, start: datetime.datetime, end: datetime.datetime
) -> tuple[datetime.datetime, datetime.datetime]:
    """The range, if both ends exist in UTC too (0001-01-01T00:00+14:00 does not)."""
    try:
        start.astimezone(datetime.UTC), end.astimezone(datetime.UTC)
    except OverflowError as exc:
        raise SearchParamError(name, f"{name} is outside the dates this server holds.") from exc
    return start, end


def unknown_names(pairs: Iterable[tuple[str, str]], known: Iterable[str]) -> list[str]:
    """The parameters not in `known`, sorted; a name that is not a plausible parameter name
    (it might be data sent in the wrong place) is counted, not repeated back."""
    allowed = set(known)
    unknown = sorted({name for name, _ in pairs if name not in allowed})
    shown = [name for name in unknown if PARAM_NAME.fullmatch(name)]
    hidden = len(unknown) - len(shown)
    return shown + ([f"{hidden} other{'s' if hidden > 1 else ''}"] if hidden else [])


PARAM_NAME = re.compile(r"_?[A-Za-z][A-Za-z\-.:]{0,63}")


def parse_public_id(value: str) -> str | None:
    """A public id (a UUID) in its canonical form, or None if the value cannot be one."""
    # uuid.UUID() reads any Unicode digit as hex: only an ASCII id can name a row.
    if not value.isascii():
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None
