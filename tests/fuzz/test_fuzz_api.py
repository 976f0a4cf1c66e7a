"""Fuzz the edges over real HTTP: no input gives a 5xx, and every error is in its protocol's shape.

Two suites against a live server (pytest-django's `live_server`, real PostgreSQL):
- REST: every operation in /api/schema/, each sent as a user who may call it (a
  programme privacy officer, a GP with the opt-out permission, an objections
  officer, or a partner system's feed token), so the checks reach the handlers.
  Three passes: schemathesis's valid requests; one of them with each hostile
  sample (HOSTILE_SAMPLES) in each query parameter and JSON body field in turn;
  schemathesis's invalid requests.
- FHIR: the read API's search parameters, against a person every partner has
  fed, as a partner system's token: each hostile sample in each parameter of
  each kind of search, then hypothesis strategies for whole requests (names and
  values: dates past the calendar's edges, other scripts' digits, huge numbers,
  control characters, odd Unicode, repeated and unknown parameters, odd routes
  and headers).
Random draws seldom land on the few values that break a parser, hence the
samples tried everywhere before them.

The checks on every response: no 5xx (nor a dropped connection); an error from
a FHIR route (the read API, the feeds, the AuditEvent view) is an
OperationOutcome (an HL7 v2 feed may answer an ACK); any other /api/v1/ error
is {"error": {"code", "message"}}. Counts are bounded (FUZZ_EXAMPLES per
operation and mode, FUZZ_FHIR_EXAMPLES random requests) and so is the time
(FUZZ_SECONDS per suite; what the budget cut is in the figures). The figures
go to .data/fuzz-summary.json and the end of the run's output.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import pytest
import requests
import schemathesis
from django.conf import settings
from django.test import Client
from fhir.resources.R4B.operationoutcome import OperationOutcome
from guardian.shortcuts import assign_perm
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from ingestion.credentials import feed_credential_issue
from sharedrecord.fhirapi.views import PatientEverythingApi, PatientSearchApi, TypeSearchApi
from sharedrecord.models import Organisation, Patient, StaffRole, User
from sharedrecord.smart import READABLE_TYPES, SEARCHABLE_TYPES
from tests.factories import fed_person, feed, next_nhs_number, partner, small_bundle
from tests.fhirapi import partner_token
from tests.fuzz.conftest import summary_record

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db(transaction=True)]

# An HL7 v2 message (ER7) is text: schemathesis sends it as it sends text/plain.
schemathesis.serializer.alias("x-application/hl7-v2+er7", "text/plain")

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))  # per operation and generation mode
FHIR_EXAMPLES = int(os.environ.get("FUZZ_FHIR_EXAMPLES", "150"))
BUDGET_SECONDS = float(os.environ.get("FUZZ_SECONDS", "50"))  # per suite
PROGRAMME = "ZSR01"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_MEDIA = "application/fhir+json"
TIMEOUT = 20
TREAT = {"X-Purpose-Of-Use": "TREAT"}


@dataclass
class Tally:
    """What one suite sent and what came back."""

    started: float = field(default_factory=time.monotonic)
    inputs: int = 0
    unsendable: int = 0  # refused by the HTTP client itself (a header it cannot encode)
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    shape_errors: list[str] = field(default_factory=list)

    def out_of_time(self) -> bool:
        return time.monotonic() - self.started > BUDGET_SECONDS

    def figures(self, **more: Any) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "unsendable": self.unsendable,
            "server_errors": len(self.server_errors),
            "shape_errors": len(self.shape_errors),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "seconds": round(time.monotonic() - self.started, 1),
            "out_of_time": self.out_of_time(),
            "examples": self.server_errors[:20] + self.shape_errors[:20],
            **more,
        }


def _probe(strategy: st.SearchStrategy[Any], examples: int, test: Callable[[Any], None]) -> bool:
    """Run `test` on up to `examples` values of `strategy` (failures are tallied, not raised).

    False if the strategy has no values at all (an operation without
    parameters or a body has no invalid requests to generate).
    """

    @hypothesis_settings(
        max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(strategy)
    def run(value: Any) -> None:
        test(value)

    try:
        run()
    except Unsatisfiable:
        return False
    return True


# ------------------------------------------------------------------ hostile values
# Random text alone seldom lands on the values that break parsers, so most of these
# are drawn from the families the outside review used: dates at and past the
# calendar's edges, numbers in other scripts' digits, control characters, huge
# numbers, and text from every Unicode category.

EDGE_DATES = st.builds(
    lambda prefix, year, rest: prefix + year + rest,
    st.sampled_from(["", "", "ge", "le", "gt", "lt", "eq", "ne", "sa", "eb", "ap"]),
    st.sampled_from(["0000", "0001", "1899", "2024", "9998", "9999", "10000", "99"]),
    st.sampled_from(
        ["", "-12", "-13", "-00", "-02-29", "-02-30", "-12-31", "-12-31T23:59:59Z",
         "-01-01T00:00:00+14:00", "-12-31T23:59:59-14:00", "-06-15T24:00:00Z",
         "-06-15T10:00:60Z", "-06-15T10:00:00+15:00", "-06-15T10:00", "-06-15T10:00:00",
         "-06-15T10:00:00.1234567890Z", "-06-15T10:00:00 01:00", "-1-1"]
    ),
)  # fmt: skip
# Decimal digits of other scripts (Arabic-Indic, fullwidth, Devanagari, mathematical), and
# superscripts: Python's int() takes the first kind, str.isdigit() both.
DIGIT_SYSTEMS = [
    *("".join(chr(zero + i) for i in range(10)) for zero in (0x0660, 0xFF10, 0x0966, 0x1D7D8)),
    "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079",
]
FOREIGN_DIGITS = st.builds(
    lambda text, digits: text.translate(str.maketrans("0123456789", digits)),
    st.sampled_from(["2", "50", "2024", "2024-01-31", "2024-01-31T10:00:00Z", "9434765919",
                     "2020-01-01T00:00:00+00:00_12"]),
    st.sampled_from(DIGIT_SYSTEMS),
)  # fmt: skip
HUGE_NUMBERS = st.integers(min_value=-(10**40), max_value=10**40).map(str) | st.sampled_from(
    ["9" * 5000, "0" * 300 + "1", "1e309", "-1", "-0", "NaN", "Infinity", "2147483648",
     "9223372036854775808", "0x10", "1_000"]
)  # fmt: skip
CONTROL = st.sampled_from(
    ["\x00", "a\x00b", "\x1b[31m", "\r\nX-Injected: 1", "\t", "\x7f", "\x0b", "%00"]
)
WEIRD = st.sampled_from(
    ["", " ", "*", "|", "||", ",,,", "|x", "x|", "null", "[]", "{}", "' OR '1'='1", "\u202e",
     "\ufeff", "\U0001f642", "\U0010ffff", "x" * 2000, "a," * 500, "../../etc/passwd"]
)  # fmt: skip
# Text any HTTP client can send in a URL (no lone surrogates), from every Unicode category.
ODD_TEXT = st.text(st.characters(codec="utf-8"), max_size=24)
HOSTILE = st.one_of(EDGE_DATES, FOREIGN_DIGITS, HUGE_NUMBERS, CONTROL, WEIRD, ODD_TEXT)
# One of each family, tried in every parameter and field in turn (random draws may miss them).
HOSTILE_SAMPLES = [
    "9999-12-31", "0000-01-01", "2024-02-30", "le9999-12-31", "2020-13-01T00:00:00Z",
    "2024-01-31".translate(str.maketrans("0123456789", DIGIT_SYSTEMS[0])),
    DIGIT_SYSTEMS[4][2], "a\x00b", "9" * 5000, "9223372036854775808", "-1", "\U0010ffff",
]  # fmt: skip


# ------------------------------------------------------------------ the checks


Shape = Literal["fhir", "hl7", "rest"]
HL7_MEDIA = "x-application/hl7-v2+er7"


def shape_of(path: str) -> Shape:
    """The error shape a route answers in: the read API, the feeds and the AuditEvent view
    are FHIR (an HL7 v2 feed's own errors may also be an ACK); the rest is REST."""
    if path.startswith("/api/v1/feeds/hl7v2"):
        return "hl7"
    if path.startswith(("/fhir/", "/api/v1/feeds/", "/api/v1/audit/fhir/")):
        return "fhir"
    return "rest"


def problem(
    *, shape: Shape, status: int, content_type: str, body: bytes, documented: frozenset[int]
) -> str:
    """What is wrong with one response, or "" (a 2xx or 3xx, or an error in its shape).

    A 5xx is a defect unless the operation documents it (readiness answers 503).
    """
    if status >= 500:
        return "" if status in documented else f"{status}"
    if status < 400:
        return ""
    media = content_type.split(";")[0].strip().lower()
    if shape == "hl7" and media == HL7_MEDIA:
        return "" if body.startswith(b"MSH|") else f"{status} an HL7 answer that is not an ACK"
    try:
        parsed = json.loads(body) if media in (FHIR_MEDIA, "application/json") else None
    except ValueError:
        return f"{status} {media} that is not JSON"
    if shape in ("fhir", "hl7"):
        if media != FHIR_MEDIA or not isinstance(parsed, dict):
            return f"{status} {media or 'no content type'}, not an OperationOutcome"
        try:
            OperationOutcome.model_validate(parsed)
        except ValueError:
            return f"{status} an invalid OperationOutcome"
        return "" if parsed.get("issue") else f"{status} an OperationOutcome with no issue"
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if media != "application/json" or not isinstance(error, dict):
        return f"{status} {media or 'no content type'}, not the error shape"
    if not (isinstance(error.get("code"), str) and isinstance(error.get("message"), str)):
        return f"{status} an error without a code and a message"
    return ""


def tally_response(
    tally: Tally, what: str, *, shape: Shape, status: int, content_type: str, body: bytes,
    documented: frozenset[int] = frozenset(),
) -> None:  # fmt: skip
    tally.inputs += 1
    tally.statuses[status] += 1
    found = problem(
        shape=shape, status=status, content_type=content_type, body=body, documented=documented
    )
    if not found:
        return
    line = f"{found}: {what}"[:400]
    (tally.server_errors if status >= 500 else tally.shape_errors).append(line)


# ------------------------------------------------------------------ who calls


@dataclass(frozen=True)
class World:
    """Who the REST suite calls as: session cookies of users who may call, a feed token."""

    officer: dict[str, str]  # cookies
    practice: dict[str, str]
    objections: dict[str, str]
    quality: dict[str, str]
    csrf: str
    feed_token: str


@dataclass(frozen=True)
class Reader:
    """Who the FHIR suite calls as (a partner system's token), and the person it reads."""

    token: str
    patient: Patient


def _session(user: User, csrf: str) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    return {
        settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value,
        settings.CSRF_COOKIE_NAME: csrf,
    }


@pytest.fixture
def world(live_server: Any, settings: Any) -> World:
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME]
    programme, _ = Organisation.objects.get_or_create(
        ods_code=PROGRAMME, defaults={"name": "Programme", "kind": "other",
                                      "dsa_start": "2025-01-01"},
    )  # fmt: skip
    practice = partner("Z81001")
    gp = User.objects.create_user("fuzz.gp", organisation=practice, role=StaffRole.GP)
    assign_perm("sharedrecord.manage_optouts", gp, practice)
    officer = User.objects.create_user(
        "fuzz.po", organisation=programme, role=StaffRole.PRIVACY_OFFICER
    )
    objections = User.objects.create_user(
        "fuzz.oo", organisation=programme, role=StaffRole.OBJECTIONS_OFFICER
    )
    quality = User.objects.create_user(
        "fuzz.dq", organisation=programme, role=StaffRole.DATA_QUALITY_OFFICER
    )
    # A CSRF secret of our own, in the cookie and the header, as a browser sends it.
    csrf = secrets.token_hex(16)
    credential, feed_token = feed_credential_issue(organisation=practice, system="Fuzz EPR")
    # Something in the trail of every kind a feed writes (its receipt counts its entries).
    feed(credential, small_bundle(next_nhs_number(), key="fuzz"))
    return World(
        officer=_session(officer, csrf), practice=_session(gp, csrf),
        objections=_session(objections, csrf), quality=_session(quality, csrf), csrf=csrf,
        feed_token=feed_token,
    )  # fmt: skip


@pytest.fixture
def reader(live_server: Any) -> Reader:
    patient = fed_person(key="fuzz")
    token = partner_token(Client(), partner("ZAC01"), name="Fuzz EPR")
    return Reader(token=token, patient=patient)


# ------------------------------------------------------------------ REST, from the OpenAPI document


def _credentials(world: World, path: str, security: list[dict[str, Any]]) -> dict[str, Any]:
    """Who calls an operation: the feed token, or the session of a user who may call it."""
    schemes = {name for requirement in security for name in requirement}
    if "feedToken" in schemes:
        return {"headers": {"Authorization": f"Bearer {world.feed_token}"}, "cookies": {}}
    if "cookieAuth" not in schemes:
        return {"headers": {}, "cookies": {}}
    if path.startswith("/api/v1/audit/"):
        cookies = world.officer
    elif path.startswith("/api/v1/optouts/objections"):
        cookies = world.objections
    elif path.startswith("/api/v1/workbench/"):
        cookies = world.quality
    else:
        cookies = world.practice
    return {"headers": {"X-CSRFToken": world.csrf}, "cookies": cookies}


def _matrix_case(base: Any, where: str, name: str, value: str) -> Any:
    """A copy of a valid request with one query parameter or JSON body field set to `value`."""
    query, body = dict(base.query or {}), base.body
    if where == "query":
        query[name] = value
    else:
        body = {**body, name: value}
    return base.operation.Case(
        method=base.method, path_parameters=dict(base.path_parameters or {}),
        headers=dict(base.headers or {}), query=query, body=body, media_type=base.media_type,
    )  # fmt: skip


def test_every_rest_operation_survives_hostile_input(live_server: Any, world: World) -> None:
    """Every operation in three passes, the most telling first (the time budget ends the
    last): schemathesis's valid requests; one of them with each hostile sample in each query
    parameter and JSON body field in turn; schemathesis's invalid requests."""
    document = requests.get(
        f"{live_server.url}/api/schema/", params={"format": "json"}, cookies=world.officer,
        timeout=TIMEOUT,
    ).json()  # fmt: skip
    schema = schemathesis.openapi.from_dict(document)
    tally = Tally()
    nothing_to_generate: list[str] = []
    operations = [
        (method.upper(), path, spec, schema[path][method.upper()])
        for path, methods in document["paths"].items()
        for method, spec in methods.items()
    ]

    def sender(spec: dict[str, Any], path: str) -> Callable[[Any], None]:
        auth = _credentials(world, path, spec.get("security", []))
        documented = frozenset(int(code) for code in spec.get("responses", {}) if code.isdigit())

        def send(case: Any) -> None:
            if tally.out_of_time():
                return
            try:
                response = case.call(
                    base_url=live_server.url, headers=auth["headers"], cookies=auth["cookies"],
                    timeout=TIMEOUT, allow_redirects=False,
                )  # fmt: skip
            except (UnicodeError, requests.exceptions.InvalidHeader, ValueError):
                tally.unsendable += 1
                return
            except requests.exceptions.ConnectionError as dropped:
                tally.inputs += 1
                tally.server_errors.append(f"dropped: {case.as_curl_command()}: {dropped}")
                return
            tally_response(
                tally, case.as_curl_command(), shape=shape_of(case.formatted_path),
                status=response.status_code,
                content_type=(response.headers.get("content-type") or [""])[0],
                body=response.content, documented=documented,
            )  # fmt: skip

        return send

    bases: dict[str, Any] = {}
    for method, path, spec, operation in operations:
        send = sender(spec, path)

        def keep(case: Any, key: str = f"{method} {path}", send: Any = send) -> None:
            bases.setdefault(key, case)  # the base of the hostile pass
            send(case)

        if not _probe(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                      EXAMPLES, keep):  # fmt: skip
            nothing_to_generate.append(f"{method} {path} positive")
    for method, path, spec, _ in operations:
        base = bases.get(f"{method} {path}")
        if base is None:
            continue
        send = sender(spec, path)
        fields = [("query", p["name"]) for p in spec.get("parameters", []) if p["in"] == "query"]
        if isinstance(base.body, dict):
            fields += [("body", key) for key in sorted(base.body)]
        for where, name in fields:
            for value in HOSTILE_SAMPLES:
                send(_matrix_case(base, where, name, value))
    for method, path, spec, operation in operations:
        if not _probe(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
                      EXAMPLES, sender(spec, path)):  # fmt: skip
            nothing_to_generate.append(f"{method} {path} negative")
    summary_record("rest", tally.figures(
        operations=len(operations), per_operation_and_mode=EXAMPLES,
        hostile_samples=len(HOSTILE_SAMPLES), nothing_to_generate=nothing_to_generate,
    ))  # fmt: skip
    assert len(operations) >= 20  # every documented operation was fuzzed
    assert tally.server_errors == []
    assert tally.shape_errors == []


# ------------------------------------------------------------------ FHIR search parameters

PARAMETERS = [
    "patient", "date", "category", "code", "status", "_lastUpdated", "_count", "_cursor",
    "_revinclude", "_since", "_type", "identifier", "family", "birthdate", "gender",
    "address-postalcode", "_format", "_elements", "_sort",
]  # fmt: skip
DATE_PARAMETERS = frozenset({"date", "_lastUpdated", "_since", "birthdate"})
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=20)


def fhir_requests(patient: Patient) -> st.SearchStrategy[dict[str, Any]]:
    """A read API request: a route with the parameters it needs to reach the database, hostile
    parameters after them, and the headers a client sends."""
    pid = str(patient.public_id)
    good = st.sampled_from([
        pid, f"Patient/{pid}", "2024", "ge2020-01-01", "le2030-12-31T23:59:59Z",
        "http://snomed.info/sct|44054006", "final", "laboratory", "5", "0", "1000",
        "Provenance:target", "Condition,Observation", f"{NHS}|{patient.nhs_number}",
        patient.family_name, str(patient.birth_date), "female", patient.postcode or "ZZ1 1AA",
    ])  # fmt: skip
    dates = st.sampled_from(["2024", "ge2020-01-01", "le2030-12-31T23:59:59Z", "2024-02"])

    def values(name: str) -> st.SearchStrategy[str]:
        """Values for one parameter: mostly the hostile kinds its own grammar must refuse."""
        if name in DATE_PARAMETERS:
            return st.one_of(dates, EDGE_DATES, EDGE_DATES, FOREIGN_DIGITS, HOSTILE)
        if name == "_count":
            numbers = st.integers(min_value=0, max_value=2000).map(str)
            return st.one_of(numbers, HUGE_NUMBERS, FOREIGN_DIGITS, HOSTILE)
        return st.one_of(good, HOSTILE)

    known = st.sampled_from(PARAMETERS).flatmap(lambda n: st.tuples(st.just(n), values(n)))
    # Repeats come from drawing a name twice, or a route's own parameter again.
    hostile = st.lists(st.one_of(known, known, st.tuples(ODD_TEXT, HOSTILE)), max_size=5)
    segment = st.one_of(st.sampled_from([pid, "not-a-uuid"]), ODD_TEXT.filter(bool))
    resource_type = st.one_of(st.sampled_from(sorted(READABLE_TYPES)), ODD_TEXT.filter(bool))
    by_number = [("identifier", f"{NHS}|{patient.nhs_number}")]
    by_name = [("family", patient.family_name), ("birthdate", str(patient.birth_date))]
    type_search = st.tuples(
        st.just("GET"), st.sampled_from(SEARCHABLE_TYPES), st.just([("patient", pid)])
    )
    route = st.one_of(
        st.tuples(st.just("GET"), st.just("Patient"), st.sampled_from([by_number, by_name, []])),
        st.tuples(st.just("POST"), st.just("Patient/_search"), st.sampled_from([by_number, []])),
        # Type searches of the person: the ones that build queries, so the most often.
        *[type_search] * 4,
        st.tuples(st.just("GET"), st.just(f"Patient/{pid}/$everything"), st.just([])),
        st.tuples(st.just("GET"), st.just(f"Patient/{pid}"), st.just([])),
        st.builds(lambda t: ("GET", quote(t, safe=""), []), resource_type),
        st.builds(lambda i: ("GET", f"Patient/{quote(i, safe='')}", []), segment),
        st.builds(lambda i: ("GET", f"Patient/{quote(i, safe='')}/$everything", []), segment),
        st.builds(
            lambda t, i: ("GET", f"{quote(t, safe='')}/{quote(i, safe='')}", []),
            resource_type,
            segment,
        ),
        st.builds(lambda m: (m, "Observation", []), st.sampled_from(["PUT", "DELETE", "PATCH"])),
    )
    headers = st.fixed_dictionaries(
        {"X-Purpose-Of-Use": st.sampled_from(["TREAT"] * 6 + ["ETREAT", "", "treat "])
         | HEADER_TEXT},
        optional={
            "Prefer": st.sampled_from(["handling=strict", "handling=lenient"]) | HEADER_TEXT,
            "X-Break-Glass-Reason": st.sampled_from(["OVRER", "XX"]) | HEADER_TEXT,
            "X-Break-Glass-Justification": HEADER_TEXT,
            "Accept": st.sampled_from(
                [FHIR_MEDIA, "application/json", "*/*", "application/fhir+xml", "text/html;q=x"]
            ),
        },
    )  # fmt: skip
    return st.fixed_dictionaries({"route": route, "hostile": hostile, "headers": headers})


def test_fhir_search_parameters_survive_hostile_input(live_server: Any, reader: Reader) -> None:
    base = f"{live_server.url}/fhir/R4"
    tally = Tally()
    session = requests.Session()

    def send(request: dict[str, Any]) -> None:
        if tally.out_of_time():
            return
        method, path, needed = request["route"]
        headers = {**request["headers"], "Authorization": f"Bearer {reader.token}"}
        params: list[tuple[str, str]] = [*needed, *request["hostile"]]
        what = f"{method} /fhir/R4/{path} {params!r} {request['headers']!r}"
        try:
            if method == "POST":
                response = session.post(f"{base}/{path}", data=params, headers=headers,
                                        timeout=TIMEOUT)  # fmt: skip
            else:
                response = session.request(method, f"{base}/{path}", params=params,
                                           headers=headers, timeout=TIMEOUT)  # fmt: skip
        except (UnicodeError, requests.exceptions.InvalidHeader, ValueError):
            tally.unsendable += 1
            return
        except requests.exceptions.ConnectionError as dropped:
            tally.inputs += 1
            tally.server_errors.append(f"dropped: {what}: {dropped}")
            return
        tally_response(
            tally, what, shape="fhir", status=response.status_code,
            content_type=response.headers.get("Content-Type", ""), body=response.content,
        )  # fmt: skip

    # Every hostile sample in each parameter of each kind of search, then random requests.
    pid = str(reader.patient.public_id)
    searches = [
        (("GET", "Observation", [("patient", pid)]), TypeSearchApi.params),
        (("GET", f"Patient/{pid}/$everything", []), PatientEverythingApi.params),
        (("GET", "Patient", [("family", reader.patient.family_name)]), PatientSearchApi.params),
    ]
    for route, names in searches:
        for name in sorted(names):
            for value in HOSTILE_SAMPLES:
                send({"route": route, "hostile": [(name, value)], "headers": TREAT})
    _probe(fhir_requests(reader.patient), FHIR_EXAMPLES, send)
    summary_record("fhir", tally.figures(
        hostile_samples=len(HOSTILE_SAMPLES), random_requests=FHIR_EXAMPLES
    ))  # fmt: skip
    assert tally.inputs >= min(FHIR_EXAMPLES // 2, 50)  # the budget let it do real work
    assert tally.server_errors == []
    assert tally.shape_errors == []
