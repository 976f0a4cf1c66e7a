"""The FHIR search-parameter grammar: every odd value is a precise 400, never a 500.

The first half calls the read API over HTTP with the values the outside review
sent; the second half tests the pure grammar (sharedrecord/fhirapi/params.py).
"""

from __future__ import annotations

import datetime
import json
import zoneinfo
from typing import Any

import pytest
from django.test import Client
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from sharedrecord.apis import bad_request, not_found
from sharedrecord.fhirapi.params import (
    DateParam,
    SearchParamError,
    Token,
    parse_count,
    parse_date,
    parse_everything,
    parse_instant,
    parse_patient_search,
    parse_type_search,
    unknown_names,
)
from sharedrecord.models import Patient
from tests.fhirapi import fhir_get, staff_token

NOBODY = "8f1c7f64-3b0e-4a8e-9a55-0d2f4b1c2a10"
EVERYTHING = f"Patient/{NOBODY}/$everything"

# Each case: (path, params, the parameter the 400 must name, text it must not repeat).
Case = tuple[str, dict[str, Any], str, str]

OUT_OF_RANGE: list[Case] = [
    ("Observation", {"patient": NOBODY, "date": "9999-12"}, "date", "9999"),
    ("Observation", {"patient": NOBODY, "date": "ge9999-12-31"}, "date", "9999"),
    ("Observation", {"patient": NOBODY, "_lastUpdated": "9999-12-31T23:59:59Z"}, "_lastUpdated",
     "9999"),
    ("Observation", {"patient": NOBODY, "_lastUpdated": "0000-01-01"}, "_lastUpdated", "0000"),
    ("Patient", {"family": "Smith", "birthdate": "9999-12"}, "birthdate", "Smith"),
    (EVERYTHING, {"_since": "9999-12-31T23:59:59-14:00"}, "_since", "9999"),
    (EVERYTHING, {"_since": "0001-01-01T00:00:00+14:00"}, "_since", "0001"),
]  # fmt: skip
NOT_REAL: list[Case] = [
    (EVERYTHING, {"_since": "2020-13-01T00:00:00Z"}, "_since", "2020"),
    (EVERYTHING, {"_since": "2020-01-01"}, "_since", "2020"),
    ("Observation", {"patient": NOBODY, "date": "2020-02-30"}, "date", "2020"),
    ("Observation", {"patient": NOBODY, "date": "2020-01-01T24:00:00Z"}, "date", "2020"),
    ("Observation", {"patient": NOBODY, "date": "2020-01-01T10:00:60Z"}, "date", "2020"),
    ("Observation", {"patient": NOBODY, "date": "2020-01-01T10:00:00+15:00"}, "date", "2020"),
    ("Observation", {"patient": NOBODY, "date": "ap2020"}, "date", "2020"),
    ("Observation", {"patient": NOBODY, "date": "2020\n"}, "date", "2020"),
    ("Patient", {"family": "Smith", "birthdate": "1960-13-01"}, "birthdate", "1960"),
    ("Patient", {"family": "Smith", "birthdate": "ge1960-01-01"}, "birthdate", "1960"),
]  # fmt: skip
UNICODE_DIGITS: list[Case] = [
    ("Observation", {"patient": NOBODY, "_count": "²"}, "_count", "²"),
    (EVERYTHING, {"_count": "²"}, "_count", "²"),
    ("Observation", {"patient": NOBODY, "date": "\uff12\uff10\uff12\uff10"}, "date", "\uff12\uff10\uff12\uff10"),
    (EVERYTHING, {"_since": "\uff12\uff10\uff12\uff10-01-01T00:00:00Z"}, "_since", "\uff12\uff10\uff12\uff10"),
    ("Patient", {"family": "Smith", "birthdate": "\uff11\uff19\uff16\uff10-01-01"}, "birthdate", "Smith"),
    ("Patient", {"identifier": "https://fhir.nhs.uk/Id/nhs-number|٩٤٣٤٧٦٥٩١٩"}, "identifier",
     "٩٤٣٤٧٦٥٩١٩"),
]  # fmt: skip
HOSTILE: list[Case] = [
    ("Observation", {"patient": NOBODY, "_count": "-1"}, "_count", "-1"),
    ("Observation", {"patient": NOBODY, "_count": "9" * 5000}, "_count", "9999"),
    ("Observation", {"patient": NOBODY, "code": "a\x00b"}, "code", "a\x00b"),
    ("Observation", {"patient": NOBODY, "category": "x\x00"}, "category", "x\x00"),
    ("Observation", {"patient": NOBODY, "status": "final\x00"}, "status", "final"),
    ("Observation", {"patient": NOBODY, "code": "x" * 2000}, "code", "xxxx"),
    ("Observation", {"patient": NOBODY, "code": ",".join(["a"] * 51)}, "code", "a,a"),
    ("Observation", {"patient": f"Patient/{NOBODY} x"}, "patient", NOBODY),
    ("Observation", {"patient": NOBODY, "_count": ["1", "2"]}, "_count", "1"),
    ("Patient", {"family": "Smi\x00th", "birthdate": "1960-01-01"}, "family", "Smi"),
    ("Patient", {"family": "Smith", "birthdate": "1960-01-01", "gender": "x\x00"}, "gender",
     "Smith"),
    ("Patient", {"family": "Smith", "birthdate": "1960-01-01", "gender": "robot"}, "gender",
     "robot"),
    ("Patient", {"family": "Smith", "birthdate": "1960-01-01", "address-postalcode": "\x00"},
     "address-postalcode", "Smith"),
    ("Patient", {"identifier": "https://fhir.nhs.uk/Id/nhs-number|Smith"}, "identifier",
     "Smith"),
]  # fmt: skip


def problems(client: Client, token: str, cases: list[Case]) -> dict[str, Any]:
    """Each case that is not a 400 OperationOutcome naming its parameter and nothing it was sent."""
    found: dict[str, Any] = {}
    for path, params, parameter, secret in cases:
        before = AuditEvent.objects.count()
        response = fhir_get(client, token, path, params)
        body = response.json_body
        try:
            assert response.status_code == 400, response.status_code
            get_fhir_model_class("OperationOutcome").model_validate(body)
            (issue,) = body["issue"]
            assert issue["severity"] == "error"
            # "too-costly" where the value is well formed but asks for too much.
            assert issue["code"] in ("value", "invalid", "too-costly"), issue["code"]
            assert issue["expression"] == [f"http.{parameter}"], issue.get("expression")
            assert parameter in issue["diagnostics"]
            assert secret not in issue["diagnostics"], "repeats what it was sent"
            # Refused before anything was searched: no read, so nothing to audit.
            assert AuditEvent.objects.count() == before, "searched"
        except (AssertionError, KeyError, TypeError, ValueError) as failed:
            found[f"{path.split('/')[0]} {params!r}"[:160]] = f"{failed!r}: {body!r}"[:300]
    return found


@pytest.mark.django_db
def test_out_of_range_dates_are_a_400_not_a_500(client: Client, registered_gp: Any) -> None:
    assert problems(client, staff_token(client, registered_gp), OUT_OF_RANGE) == {}


@pytest.mark.django_db
def test_dates_and_times_that_do_not_exist_are_a_400(client: Client, registered_gp: Any) -> None:
    assert problems(client, staff_token(client, registered_gp), NOT_REAL) == {}


@pytest.mark.django_db
def test_unicode_digits_are_refused_wherever_a_number_or_date_is_read(
    client: Client, registered_gp: Any
) -> None:
    assert problems(client, staff_token(client, registered_gp), UNICODE_DIGITS) == {}


@pytest.mark.django_db
def test_control_characters_huge_numbers_and_repeats_are_a_400(
    client: Client, registered_gp: Any
) -> None:
    assert problems(client, staff_token(client, registered_gp), HOSTILE) == {}


@pytest.mark.django_db
def test_a_patient_read_with_no_relationship_is_flagged_for_review(
    client: Client, registered_gp: Any, unrelated_clinician: Any, record: Patient
) -> None:
    patient = record
    path = f"Patient/{patient.public_id}"
    for user, flagged in ((unrelated_clinician, True), (registered_gp, False)):
        token = staff_token(client, user)
        assert fhir_get(client, token, path).status_code == 200
        event = AuditEvent.objects.filter(action="api-read", actor_name=user.username).latest("id")
        assert event.detail["needs_review"] is flagged, user.username
        assert event.detail["break_glass"] is False
    # Like $everything, whose review flag the same relationship decides.
    token = staff_token(client, unrelated_clinician)
    assert fhir_get(client, token, f"{path}/$everything").status_code == 200
    everything = AuditEvent.objects.filter(
        action="api-read", actor_name=unrelated_clinician.username
    ).latest("id")
    assert everything.detail["needs_review"] is True


def test_an_address_no_route_takes_answers_in_its_protocols_shape(rf: Any) -> None:
    """sharedrecord.apis.not_found and bad_request, the URLconf's handler404 and handler400."""
    for handler, status in ((not_found, 404), (bad_request, 400)):
        for path in ("/fhir/R4/Patient/a/b/c", "/api/v1/feeds/receipts/x", "/api/v1/audit/fhir/x"):
            answer = handler(rf.get(path), Exception())
            assert answer.status_code == status
            assert answer["Content-Type"] == "application/fhir+json"
            get_fhir_model_class("OperationOutcome").model_validate_json(answer.content)
        rest = handler(rf.get("/api/v1/optouts/x"), Exception())
        assert (rest.status_code, rest["Content-Type"]) == (status, "application/json")
        assert set(json.loads(rest.content)["error"]) == {"code", "message"}
        page = handler(rf.get("/governance/x"), Exception())
        assert page.status_code == status
        assert page["Content-Type"].startswith("text/html")


# ------------------------------------------------------------------ the grammar alone

LONDON = zoneinfo.ZoneInfo("Europe/London")
UTC = datetime.UTC


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
    micro: int = 0, tz: datetime.tzinfo = LONDON,
) -> datetime.datetime:  # fmt: skip
    return datetime.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024", DateParam("eq", at(2024, 1, 1), at(2025, 1, 1))),
        ("ge2024-02", DateParam("ge", at(2024, 2, 1), at(2024, 3, 1))),
        ("le2024-12", DateParam("le", at(2024, 12, 1), at(2025, 1, 1))),
        ("ne2024-02-29", DateParam("ne", at(2024, 2, 29), at(2024, 3, 1))),
        ("2024-02-29T10:30", DateParam("eq", at(2024, 2, 29, 10, 30), at(2024, 2, 29, 10, 31))),
        ("gt2024-02-29T10:30:15Z",
         DateParam("gt", at(2024, 2, 29, 10, 30, 15, tz=UTC), at(2024, 2, 29, 10, 30, 16, tz=UTC))),
        ("2024-02-29T10:30:15.5+01:00",
         DateParam("eq", at(2024, 2, 29, 9, 30, 15, 500000, tz=UTC),
                   at(2024, 2, 29, 9, 30, 15, 600000, tz=UTC))),
        # An unescaped "+" arrives as a space.
        ("2024-02-29T10:30:15 01:00",
         DateParam("eq", at(2024, 2, 29, 9, 30, 15, tz=UTC), at(2024, 2, 29, 9, 30, 16, tz=UTC))),
        ("0001", DateParam("eq", at(1, 1, 1), at(2, 1, 1))),
        ("9998-12-31", DateParam("eq", at(9998, 12, 31), at(9999, 1, 1))),
        ("2024-01-01T00:00:00-14:00",
         DateParam("eq", at(2024, 1, 1, 14, tz=UTC), at(2024, 1, 1, 14, 0, 1, tz=UTC))),
    ],
)  # fmt: skip
def test_a_date_value_covers_its_whole_precision(value: str, expected: DateParam) -> None:
    assert parse_date("date", value, tz=LONDON) == expected


@pytest.mark.parametrize(
    "value",
    ["", "9999", "0000", "2024-13", "2024-02-30", "2024-1-1", "24-01-01", "\uff12\uff10\uff12\uff14",
     "2024-01-01T10", "2024-01-01T24:00", "2024-01-01T10:60", "2024-01-01T10:00:60Z",
     "2024-01-01T10:00:00+14:01", "2024-01-01T10:00:00+15:00", "2024-01-01T10:00:00.1234567890Z",
     "ap2024", "eq", "2024-01-01Z", "2024\n", " 2024", "0001-01-01T00:00:00+00:01"],
)  # fmt: skip
def test_a_date_value_outside_the_grammar_is_refused_by_name(value: str) -> None:
    with pytest.raises(SearchParamError) as refused:
        parse_date("date", value, tz=LONDON)
    assert refused.value.parameter == "date"
    assert refused.value.issue == "value"
    assert "date" in refused.value.message
    if any(ch.isdigit() for ch in value):
        assert value.strip() not in refused.value.message


def test_an_instant_needs_seconds_and_a_zone() -> None:
    assert parse_instant("_since", "2024-01-31T09:30:00Z") == at(2024, 1, 31, 9, 30, tz=UTC)
    for value in (
        "2024-01-31",
        "2024-01-31T09:30Z",
        "2024-01-31T09:30:00",
        "ge2024-01-31T09:30:00Z",
    ):
        with pytest.raises(SearchParamError):
            parse_instant("_since", value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("7", 7), ("0007", 7), ("1000", 1000), ("1001", 1000), ("9" * 5000, 1000),
     ("0" * 5000 + "5", 5)],
)  # fmt: skip
def test_count_is_ascii_digits_capped_at_the_most_a_page_holds(value: str, expected: int) -> None:
    assert parse_count("_count", value, page_max=1000) == expected


@pytest.mark.parametrize("value", ["²", "٣", "-1", "+1", "1.0", "1e3", " 1", "0x10"])
def test_count_refuses_anything_but_ascii_digits(value: str) -> None:
    with pytest.raises(SearchParamError, match="_count"):
        parse_count("_count", value, page_max=1000)


def test_a_type_search_parses_into_typed_values() -> None:
    search = parse_type_search(
        [("patient", f"Patient/{NOBODY}"), ("code", "http://snomed.info/sct|44054006,38341003"),
         ("code", "|x"), ("status", "final, amended"), ("category", "laboratory"),
         ("date", "ge2024"), ("date", "le2024"), ("_lastUpdated", "lt2000-01-01"),
         ("_count", "5"), ("_revinclude", "Provenance:target"), ("family", "")],
        page_size=100, page_max=1000, tz=LONDON,
    )  # fmt: skip
    assert search.patient == NOBODY
    assert search.code == (
        (Token("http://snomed.info/sct", "44054006"), Token("", "38341003")),
        (Token("", "x"),),
    )
    assert search.status == (("final", "amended"),)
    assert search.category == ((Token("", "laboratory"),),)
    assert [d.prefix for d in search.date] == ["ge", "le"]
    assert search.last_updated[0].start == at(2000, 1, 1)
    assert (search.count, search.cursor, search.revinclude_provenance) == (5, "", True)
    assert (
        parse_type_search([("patient", NOBODY)], page_size=100, page_max=1000, tz=LONDON).count
        == 100
    )


@pytest.mark.parametrize(
    ("pairs", "parameter", "code"),
    [
        ([], "patient", "required"),
        ([("patient", "a"), ("patient", "b")], "patient", "value"),
        ([("patient", "Observation/x")], "patient", "value"),
        ([("patient", "a"), ("_revinclude", "Provenance:entity")], "_revinclude", "not-supported"),
        ([("patient", "a"), ("code", "|")], "code", "value"),
        ([("patient", "a"), *[("status", "x")] * 11], "status", "too-costly"),
        ([("patient", "a"), ("_cursor", "x"), ("_cursor", "y")], "_cursor", "value"),
    ],
)
def test_a_type_search_names_the_parameter_it_cannot_take(
    pairs: list[tuple[str, str]], parameter: str, code: str
) -> None:
    with pytest.raises(SearchParamError) as refused:
        parse_type_search(pairs, page_size=100, page_max=1000, tz=LONDON)
    assert (refused.value.parameter, refused.value.issue) == (parameter, code)


def test_everything_takes_since_types_and_count() -> None:
    readable = frozenset({"Condition", "Observation", "Patient"})
    found = parse_everything(
        [("_since", "2024-01-31T09:30:00+01:00"), ("_type", "Condition, Observation"),
         ("_count", "0")], page_size=100, page_max=1000, readable=readable,
    )  # fmt: skip
    assert found.since == at(2024, 1, 31, 8, 30, tz=UTC)
    assert found.types == frozenset({"Condition", "Observation"})
    assert found.count == 0
    with pytest.raises(SearchParamError) as refused:
        parse_everything([("_type", "Claim")], page_size=100, page_max=1000, readable=readable)
    assert refused.value.issue == "not-supported"
    assert "Claim" not in refused.value.message


def test_a_patient_search_is_an_nhs_number_or_a_family_name_and_a_birth_date() -> None:
    by_number = parse_patient_search(
        [("identifier", "https://fhir.nhs.uk/Id/nhs-number|943 476 5919")], tz=LONDON
    )
    assert by_number.nhs_number == "9434765919"
    assert parse_patient_search([("identifier", "9434765919")], tz=LONDON).nhs_number
    assert parse_patient_search([("identifier", "urn:other|x")], tz=LONDON).other_system
    by_name = parse_patient_search(
        [("family", " Smith "), ("birthdate", "eq1960-02-29"), ("gender", "female")], tz=LONDON
    )
    assert (by_name.family, by_name.birth_date, by_name.gender) == (
        "Smith", datetime.date(1960, 2, 29), "female",
    )  # fmt: skip
    with pytest.raises(SearchParamError) as refused:
        parse_patient_search([("family", "Smith")], tz=LONDON)
    assert (refused.value.parameter, refused.value.issue) == ("birthdate", "required")


def test_unknown_names_are_named_only_when_they_look_like_parameter_names() -> None:
    pairs = [("_elements", "x"), ("9434765919", ""), ("a\x00", ""), ("code", "")]
    assert unknown_names(pairs, {"code"}) == ["_elements", "2 others"]


ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.from_regex(
    r"(eq|ne|gt|lt|ge|le|sa|eb|ap)?[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}"
    r"(\.[0-9]{1,9})?)?(Z|[+\- ][0-9]{2}:[0-9]{2})?)?)?)?",
    fullmatch=True,
)


@settings(max_examples=300, deadline=None)
@given(value=ANY_TEXT)
def test_any_date_text_parses_to_a_range_both_python_and_postgresql_hold_or_is_refused(
    value: str,
) -> None:
    try:
        found: DateParam | SearchParamError = parse_date("date", value, tz=LONDON)
    except SearchParamError as refused:
        found = refused
    if isinstance(found, SearchParamError):
        assert found.parameter == "date"
        return
    assert found.start < found.end
    assert found.start.astimezone(UTC).year >= 1
    assert found.end.astimezone(UTC).year <= 9999


PARAMS = st.sampled_from(
    ["patient", "date", "code", "category", "status", "_lastUpdated", "_count", "_cursor",
     "_revinclude", "_since", "_type", "identifier", "family", "birthdate", "gender",
     "address-postalcode"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(pairs=st.lists(st.tuples(PARAMS, ANY_TEXT | st.integers().map(str)), max_size=8))
def test_any_parameters_parse_or_are_refused_by_name(pairs: list[tuple[str, str]]) -> None:
    names = {name for name, _ in pairs} | {"patient", "identifier", "birthdate"}
    for parse in (
        lambda: parse_type_search(pairs, page_size=100, page_max=1000, tz=LONDON),
        lambda: parse_everything(pairs, page_size=100, page_max=1000,
                                 readable=frozenset({"Observation"})),
        lambda: parse_patient_search(pairs, tz=LONDON),
    ):  # fmt: skip
        refused = ""
        try:
            parse()
        except SearchParamError as error:
            refused = error.parameter
        assert not refused or refused in names
