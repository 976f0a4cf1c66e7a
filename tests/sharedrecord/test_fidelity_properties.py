"""Clinical fidelity, property by property: what the page and the API say is what the source said.

Hypothesis generates resources of every type with every status and
qualifier, value kind, precision, partial date and time zone; each is sent
through the real feed, read by a registered GP on the record pages and
through the FHIR API, and compared with an oracle written here from the FHIR
R4 value sets (not from the code under test). The first part checks the pure
renderers over many more examples; the second goes through the pages.
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharedrecord.presentation.dates import date_shown
from sharedrecord.presentation.dosage import dosage_shown
from sharedrecord.presentation.values import quantity_shown
from tests.fhirapi import staff_token
from tests.sharedrecord.fidelity import (
    MONTHS,
    api_resource,
    as_sent,
    block,
    exact,
    page,
    probe,
    qualifier_for,
    row,
)

LONDON = zoneinfo.ZoneInfo("Europe/London")
PURE = settings(max_examples=60, deadline=None)
THROUGH_PAGES = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Each example goes through the feed, the pages and the API: minutes per test on
# the 2-core machine, so they run in the slow step (the pure renderers stay fast).
SLOW = pytest.mark.slow

# ------------------------------------------------------------------ generators


@st.composite
def fhir_dates(draw: Any, *, precisions: tuple[str, ...] = ("year", "month", "day", "minute")):
    """(as sent, as a clinician must read it): precision kept, instants in UK time."""
    precision = draw(st.sampled_from(precisions))
    moment = draw(
        st.datetimes(
            min_value=datetime.datetime(1950, 1, 1), max_value=datetime.datetime(2030, 12, 31)
        )
    )
    y, m, d = moment.year, moment.month, moment.day
    if precision == "year":
        return f"{y:04d}", f"{y:04d}"
    if precision == "month":
        return f"{y:04d}-{m:02d}", f"{MONTHS[m - 1]} {y:04d}"
    if precision == "day":
        return f"{y:04d}-{m:02d}-{d:02d}", f"{d} {MONTHS[m - 1]} {y:04d}"
    minutes = draw(st.sampled_from([0, 60, -300, 330, 600, -210]))
    aware = moment.replace(
        second=draw(st.integers(0, 59)), microsecond=0,
        tzinfo=datetime.timezone(datetime.timedelta(minutes=minutes)),
    )  # fmt: skip
    sent = aware.isoformat()
    if minutes == 0 and draw(st.booleans()):
        sent = sent.replace("+00:00", "Z")
    local = aware.astimezone(LONDON)
    return sent, f"{local.day} {MONTHS[local.month - 1]} {local.year:04d} {local:%H:%M}"


def _as_sent(number: decimal.Decimal) -> tuple[float | int, str]:
    """A decimal as a partner's JSON carries it (through our JSON), and the digits to read."""
    number = number.normalize() if number else decimal.Decimal(0)
    sent = int(number) if number == number.to_integral_value() else float(number)
    return json.loads(json.dumps(sent)), format(number, "f")


DECIMALS = st.decimals(
    min_value=decimal.Decimal("-1000"), max_value=decimal.Decimal("100000"), places=4,
    allow_nan=False, allow_infinity=False,
).map(_as_sent)  # fmt: skip
UNITS = st.sampled_from(["mmol/L", "g/L", "mmHg", "%", "10*9/L", "kg", ""])


def cc(code: str, words: str) -> dict[str, Any]:
    return {"coding": [{"system": "http://example.org/cs", "code": code}], "text": words}


# ------------------------------------------------------------------ the pure renderers


@PURE
@given(date=fhir_dates())
def test_every_date_keeps_its_precision_and_every_instant_is_uk_time(date: tuple[str, str]) -> None:
    sent, expected = date
    assert date_shown(sent) == expected


@PURE
@given(number=DECIMALS, unit=UNITS)
def test_a_quantity_shows_the_digits_sent_and_its_unit_or_says_it_has_none(
    number: tuple[float | int, str], unit: str
) -> None:
    value, digits = number
    shown = quantity_shown({"value": value, **({"unit": unit} if unit else {})})
    assert shown == (f"{digits} {unit}" if unit else f"{digits} (no unit given)")


@PURE
@given(
    dose=DECIMALS.filter(lambda n: n[0] > 0),
    unit=st.sampled_from(["mL", "tablet", "mg", "puff"]),
    every=st.integers(1, 12),
    period_unit=st.sampled_from([("h", "hours"), ("d", "days"), ("wk", "weeks")]),
    as_needed=st.booleans(),
    maximum=st.integers(1, 100),
)
def test_a_structured_dose_says_how_much_how_often_when_needed_and_the_most(
    dose: tuple[float, str], unit: str, every: int, period_unit: tuple[str, str],
    as_needed: bool, maximum: int,
) -> None:  # fmt: skip
    code, plural = period_unit
    shown = dosage_shown({
        "doseAndRate": [{"doseQuantity": {"value": dose[0], "unit": unit}}],
        "timing": {"repeat": {"frequency": 1, "period": every, "periodUnit": code}},
        "asNeededBoolean": as_needed,
        "maxDosePerPeriod": {"numerator": {"value": maximum, "unit": unit},
                             "denominator": {"value": 1, "code": "d"}},
    })  # fmt: skip
    assert shown.startswith(f"{dose[1]} {unit} ")
    if every > 1:
        assert f" every {every} {plural}" in shown
    else:
        assert {"h": " every hour", "d": " once a day", "wk": " once a week"}[code] in shown
    assert ("as needed" in shown) is as_needed
    assert shown.endswith(f"maximum {maximum} {unit} a day")


# ------------------------------------------------------------------ through the pages and API


@dataclass
class Expect:
    """What the item's row must say (and must not), and whether the summary lists it."""

    present: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    summary: str = ""  # the summary block that must (or must not) list it
    in_summary: bool | None = None


@pytest.fixture
def token(client: Client, registered_gp) -> str:
    return staff_token(client, registered_gp)


def check(
    client: Client, user: Any, token: str, section: str, items: list[tuple[dict, Expect]]
) -> None:
    """Send the items, then compare each row, the summary and the API with the oracle."""
    sent = probe(*(resource for resource, _ in items))
    markup = page(client, user, sent.patient, section)
    summary = page(client, user, sent.patient) if any(e.summary for _, e in items) else ""
    for n, (resource, expect) in enumerate(items, start=1):
        entry = sent.entry(f"-{resource['resourceType'].lower()}-{n}")
        shown = row(markup, entry)
        for text in expect.present:
            assert text in shown, (text, shown)
        for text in expect.absent:
            # Anywhere, as before, except as the tail of a year: "Jan 2001 Jan 2001" holds
            # "1 Jan 2001" only by coincidence, while "01 Jan 2001" must still fail.
            assert not re.search(rf"(?<!\d{{3}}){re.escape(text)}", shown), (text, shown)
        if expect.summary and expect.in_summary is not None:
            listed = f'data-entry="{entry.public_id}"' in summary
            assert listed is expect.in_summary, (expect.summary, resource)
            assert block(summary, expect.summary)
        # The API hands out what was stored, and what was stored is what was sent.
        from_api = as_sent(api_resource(client, token, entry))
        assert exact(from_api) == exact(as_sent(entry.resource))  # digits too: 5.10 is not 5.1
        for key, value in resource.items():
            if key != "resourceType" and isinstance(value, str):
                # Validation writes +00:00 as Z: a date-time is the same instant.
                same = instant if re.match(r"\d{4}-\d{2}-\d{2}T", value) else str
                assert same(from_api[key]) == same(value), key


def instant(sent: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(sent.replace("Z", "+00:00"))


def _title_and_qualifier(title: str, code: str | None, kind: str = "") -> list[str]:
    words = qualifier_for(kind, code)
    return [f"{title} {words}"] if words else [title]


CONDITION_CLINICAL = st.sampled_from(
    ["active", "recurrence", "relapse", "inactive", "remission", "resolved"]
)
CONDITION_VERIFICATION = st.sampled_from(
    ["unconfirmed", "provisional", "differential", "confirmed", "refuted", None]
)


@SLOW
@THROUGH_PAGES
@given(
    conditions=st.lists(
        st.tuples(CONDITION_CLINICAL, CONDITION_VERIFICATION, fhir_dates(), st.booleans()),
        min_size=1, max_size=4,
    )
)  # fmt: skip
def test_conditions(client: Client, registered_gp, token: str, conditions: list) -> None:
    items = []
    for n, (clinical, verification, (onset, onset_shown), abated) in enumerate(conditions):
        title = f"Condition number {n}"
        resource: dict[str, Any] = {
            "resourceType": "Condition", "code": {"text": title}, "onsetDateTime": onset,
            "clinicalStatus": cc(clinical, clinical),
        }  # fmt: skip
        expect = Expect(
            present=[f"Onset: {onset_shown}"],
            summary="problems",
            in_summary=clinical in ("active", "recurrence", "relapse")
            and verification != "refuted",
        )
        if verification:
            resource["verificationStatus"] = cc(verification, verification)
        words = [w for c in (verification, clinical) if (w := qualifier_for("", c))]
        expect.present.append(" ".join([title, *words]))
        if abated:
            resource["abatementDateTime"] = onset
            expect.present.append(f"Resolved: {onset_shown}")
        if len(onset) < 10:  # a partial date is never shown as a day
            expect.absent.append(f"1 Jan {onset[:4]}")
        items.append((resource, expect))
    check(client, registered_gp, token, "problems", items)


@SLOW
@THROUGH_PAGES
@given(
    allergies=st.lists(
        st.tuples(
            st.sampled_from(["high", "low", "unable-to-assess", None]),
            st.sampled_from(["allergy", "intolerance", None]),
            st.lists(st.sampled_from(["food", "medication", "environment", "biologic"]),
                     max_size=2, unique=True),
            st.sampled_from(["active", "inactive", "resolved"]),
            st.sampled_from(["unconfirmed", "confirmed", "refuted"]),
        ),
        min_size=1, max_size=4,
    )
)  # fmt: skip
def test_allergies(client: Client, registered_gp, token: str, allergies: list) -> None:
    words = {"high": "High", "low": "Low", "unable-to-assess": "Unable to assess",
             "allergy": "Allergy", "intolerance": "Intolerance (not an allergy)",
             "food": "Food", "medication": "Medication", "environment": "Environment",
             "biologic": "Biologic"}  # fmt: skip
    items = []
    for n, (criticality, kind, categories, clinical, verification) in enumerate(allergies):
        title = f"Reaction to substance {n}"
        resource: dict[str, Any] = {
            "resourceType": "AllergyIntolerance", "code": {"text": title},
            "clinicalStatus": cc(clinical, clinical),
            "verificationStatus": cc(verification, verification),
        }  # fmt: skip
        expect = Expect()
        qualifiers = [w for c in (verification, clinical) if (w := qualifier_for("", c))]
        if criticality:
            resource["criticality"] = criticality
            expect.present.append(f"Criticality: {words[criticality]}")
        if criticality == "high":
            qualifiers.append("High criticality")
        if kind:
            resource["type"] = kind
            expect.present.append(f"Type: {words[kind]}")
        if categories:
            resource["category"] = categories
            expect.present.append("Category: " + ", ".join(words[c] for c in categories))
        expect.present.append(" ".join([title, *qualifiers]) if len(qualifiers) < 2 else title)
        expect.present.extend(qualifiers)
        items.append((resource, expect))
    check(client, registered_gp, token, "allergies", items)


MEDICATION_STATUS = st.sampled_from(
    ["active", "completed", "entered-in-error", "intended", "stopped", "on-hold", "unknown",
     "not-taken"]
)  # fmt: skip


@SLOW
@THROUGH_PAGES
@given(
    medicines=st.lists(
        st.tuples(MEDICATION_STATUS.filter(lambda s: s != "entered-in-error"), DECIMALS.filter(
            lambda n: n[0] > 0), st.integers(1, 8), st.booleans(), st.integers(1, 60)),
        min_size=1, max_size=4,
    )
)  # fmt: skip
def test_medicines(client: Client, registered_gp, token: str, medicines: list) -> None:
    items = []
    for n, (status, (dose, digits), hours, as_needed, most) in enumerate(medicines):
        title = f"Medicine number {n}"
        resource = {
            "resourceType": "MedicationStatement", "status": status,
            "medicationCodeableConcept": {"text": title}, "effectiveDateTime": "2025-01-02",
            "dosage": [{
                "doseAndRate": [{"doseQuantity": {"value": dose, "unit": "mL"}}],
                "timing": {"repeat": {"frequency": 1, "period": hours, "periodUnit": "h"}},
                "asNeededBoolean": as_needed,
                "maxDosePerPeriod": {"numerator": {"value": most, "unit": "mL"},
                                     "denominator": {"value": 1, "code": "d"}},
            }],
        }  # fmt: skip
        every = f"every {hours} hours" if hours > 1 else "every hour"
        expect = Expect(
            present=[
                " ".join(_title_and_qualifier(title, status)),
                f"Dose: {digits} mL {every}" + (" as needed" if as_needed else ""),
                f"maximum {most} mL a day",
            ],
            summary="medications",
            in_summary=status in ("active", "intended", "on-hold"),
        )
        items.append((resource, expect))
    check(client, registered_gp, token, "medications", items)


@st.composite
def result_values(draw: Any) -> tuple[dict[str, Any], str]:
    """(value[x] as sent, the words a clinician must read)."""
    kind = draw(st.sampled_from(
        ["quantity", "concept", "string", "boolean", "integer", "range", "ratio", "absent",
         "time", "datetime", "period", "sampled"]
    ))  # fmt: skip
    if kind == "quantity":
        (value, digits), unit = draw(DECIMALS), draw(UNITS)
        quantity = {"value": value, **({"unit": unit} if unit else {})}
        return {
            "valueQuantity": quantity
        }, f"{digits} {unit}" if unit else f"{digits} (no unit given)"
    if kind == "concept":
        return {"valueCodeableConcept": {"text": "Detected"}}, "Detected"
    if kind == "string":
        return {"valueString": "Trace of protein"}, "Trace of protein"
    if kind == "boolean":
        value = draw(st.booleans())
        return {"valueBoolean": value}, "Yes" if value else "No"
    if kind == "integer":
        value = draw(st.integers(-5, 100000))
        return {"valueInteger": value}, str(value)
    if kind == "range":
        (low, low_digits), (high, high_digits) = draw(DECIMALS), draw(DECIMALS)
        return (
            {"valueRange": {"low": {"value": low, "unit": "mmol/L"},
                            "high": {"value": high, "unit": "mmol/L"}}},
            f"{low_digits} mmol/L to {high_digits} mmol/L",
        )  # fmt: skip
    if kind == "ratio":
        top, bottom = draw(st.integers(1, 9)), draw(st.sampled_from([2, 16, 128, 512]))
        return {"valueRatio": {"numerator": {"value": top}, "denominator": {"value": bottom}}}, (
            f"{top}:{bottom}"
        )
    if kind == "absent":
        reason = draw(st.sampled_from(["error", "not-performed", "unknown", "asked-unknown"]))
        return {"dataAbsentReason": {"coding": [{"code": reason}]}}, f"Result absent: {reason}"
    if kind == "time":
        hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
        return {"valueTime": f"{hour:02d}:{minute:02d}:00"}, f"{hour:02d}:{minute:02d}"
    if kind == "datetime":
        sent, shown = draw(fhir_dates())
        return {"valueDateTime": sent}, shown
    if kind == "period":
        sent, shown = draw(fhir_dates(precisions=("minute",)))
        return {"valuePeriod": {"start": sent}}, f"from {shown}"
    samples = draw(st.lists(st.integers(-50, 50), min_size=1, max_size=8))
    data = " ".join(str(s) for s in samples)
    return (
        {"valueSampledData": {"origin": {"value": 0, "unit": "mV"}, "period": 4,
                              "dimensions": 1, "data": data}},
        f"Sampled data: {len(samples)} sample{'s' if len(samples) > 1 else ''}, every 4 ms, "
        f"origin 0 mV: {data}",
    )  # fmt: skip


OBSERVATION_STATUS = st.sampled_from(
    ["registered", "preliminary", "final", "amended", "corrected", "cancelled", "unknown"]
)


@SLOW
@THROUGH_PAGES
@given(
    results=st.lists(
        st.tuples(OBSERVATION_STATUS, result_values(), fhir_dates(), st.booleans()),
        min_size=1, max_size=4,
    )
)  # fmt: skip
def test_results(client: Client, registered_gp, token: str, results: list) -> None:
    items = []
    for n, (status, (value, words), (when, when_shown), as_component) in enumerate(results):
        title = f"Test number {n}"
        resource: dict[str, Any] = {
            "resourceType": "Observation", "status": status, "code": {"text": title},
            "effectiveDateTime": when,
        }  # fmt: skip
        if as_component:
            resource["component"] = [{"code": {"text": "First part"}, **value}]
            shown = f"First part: {words}"
        else:
            resource.update(value)
            shown = f"Result: {words}"
        expect = Expect(present=[" ".join(_title_and_qualifier(title, status)), shown, when_shown])
        items.append((resource, expect))
    check(client, registered_gp, token, "results", items)


@SLOW
@THROUGH_PAGES
@given(
    encounters=st.lists(
        st.tuples(
            st.sampled_from(["planned", "arrived", "in-progress", "finished", "cancelled"]),
            fhir_dates(precisions=("minute",)), fhir_dates(precisions=("minute",)),
            st.booleans(),
        ),
        min_size=1, max_size=4,
    )
)  # fmt: skip
def test_encounters(client: Client, registered_gp, token: str, encounters: list) -> None:
    items = []
    for n, (status, (start, start_shown), (end, end_shown), discharged) in enumerate(encounters):
        title = f"Visit number {n}"
        if instant(end) < instant(start):  # a Period that ends before it starts is refused
            start, start_shown, end, end_shown = end, end_shown, start, start_shown
        resource: dict[str, Any] = {
            "resourceType": "Encounter", "status": status, "class": {"code": "AMB"},
            "type": [{"text": title}], "period": {"start": start, "end": end},
        }  # fmt: skip
        expect = Expect(
            present=[" ".join(_title_and_qualifier(title, status)), f"Ended: {end_shown}"]
        )
        if discharged:
            resource["hospitalization"] = {"dischargeDisposition": {"text": "Care home"}}
            expect.present.append("Discharged to: Care home")
        items.append((resource, expect))
    check(client, registered_gp, token, "encounters", items)


@SLOW
@THROUGH_PAGES
@given(
    flags=st.lists(
        st.tuples(st.sampled_from(["active", "inactive"]),
                  st.sampled_from(["past", "future", "none"])),
        min_size=1, max_size=4,
    )
)  # fmt: skip
def test_alerts(client: Client, registered_gp, token: str, flags: list) -> None:
    items = []
    today = datetime.date.today()
    for n, (status, ends) in enumerate(flags):
        title = f"Alert number {n}"
        period = {"start": "2020-01-01"}
        year = datetime.timedelta(days=365)
        end = {"past": today - year, "future": today + year}.get(ends)
        if end:
            period["end"] = end.isoformat()
        resource = {"resourceType": "Flag", "status": status, "code": {"text": title},
                    "period": period}  # fmt: skip
        expect = Expect(
            present=_title_and_qualifier(title, status),
            summary="alerts",
            in_summary=status == "active" and ends != "past",
        )
        if end and ends == "past":
            expect.present.append(f"Ended {end.day} {MONTHS[end.month - 1]} {end.year}")
        else:
            expect.absent.append("Ended")
        items.append((resource, expect))
    check(client, registered_gp, token, "alerts", items)


@SLOW
@THROUGH_PAGES
@given(
    status=st.sampled_from(["completed", "not-done"]),
    when=fhir_dates(),
)
def test_immunisations(client: Client, registered_gp, token: str, status: str, when) -> None:
    sent, shown = when
    resource: dict[str, Any] = {
        "resourceType": "Immunization", "status": status, "vaccineCode": {"text": "Vaccine"},
        "occurrenceDateTime": sent,
    }  # fmt: skip
    expect = Expect(
        present=[" ".join(_title_and_qualifier("Vaccine", status, "Immunization")), shown]
    )
    if status == "not-done":
        resource["statusReason"] = {"text": "Person declined"}
        expect.present.append("Not given because: Person declined")
    check(client, registered_gp, token, "immunisations", [(resource, expect)])


# Every other type: its title and the qualifier its status needs, in its own section.
OTHERS = {
    "Procedure": ("procedures", "code", ["preparation", "in-progress", "not-done", "on-hold",
                                         "stopped", "completed", "unknown"]),
    "CarePlan": ("care-plans", "title", ["draft", "active", "on-hold", "revoked", "completed",
                                         "unknown"]),
    "DiagnosticReport": ("results", "code", ["registered", "partial", "preliminary", "final",
                                             "amended", "corrected", "appended", "cancelled"]),
    "ServiceRequest": ("referrals", "code", ["draft", "active", "on-hold", "revoked",
                                             "completed", "unknown"]),
    "DocumentReference": ("documents", "type", ["current", "superseded"]),
    "Appointment": ("appointments", "serviceType", ["proposed", "pending", "booked", "fulfilled",
                                                    "cancelled", "noshow"]),
    "CareTeam": ("contacts", "name", ["proposed", "active", "suspended", "inactive"]),
    "MedicationRequest": ("medications", "medicationCodeableConcept",
                          ["active", "on-hold", "cancelled", "completed", "stopped", "draft",
                           "unknown"]),
}  # fmt: skip
REQUIRED: dict[str, dict[str, Any]] = {
    "CarePlan": {"intent": "plan"}, "ServiceRequest": {"intent": "order"},
    "MedicationRequest": {"intent": "order"}, "Appointment": {"start": "2026-01-05T10:00:00Z"},
    "DocumentReference": {"content": [{"attachment": {"contentType": "text/plain",
                                                      "data": "aGVsbG8="}}]},
}  # fmt: skip


@SLOW
@THROUGH_PAGES
@given(
    picks=st.lists(
        st.sampled_from(sorted(OTHERS)).flatmap(
            lambda kind: st.tuples(st.just(kind), st.sampled_from(OTHERS[kind][2]))
        ),
        min_size=1, max_size=1,
    )
)  # fmt: skip
def test_every_other_type_shows_its_status(
    client: Client, registered_gp, token: str, picks: list
) -> None:
    ((kind, status),) = picks
    section, title_element, _ = OTHERS[kind]
    title = f"{kind} item"
    words: Any = {"text": title}
    if title_element in ("title", "name"):
        words = title
    elif title_element == "serviceType":
        words = [{"text": title}]
    resource = {
        "resourceType": kind,
        "status": status,
        title_element: words,
        **REQUIRED.get(kind, {}),
    }
    expect = Expect(present=[" ".join(_title_and_qualifier(title, status, kind))])
    check(client, registered_gp, token, section, [(resource, expect)])
