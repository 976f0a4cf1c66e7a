"""Test data builders. Personal data here is synthetic (999-range NHS numbers)."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import itertools
import json
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, cast

from django.http import StreamingHttpResponse
from django.test import Client
from django.utils import timezone

from ingestion.credentials import feed_credential_issue
from ingestion.demo import (
    PEOPLE,
    BundleBuilder,
    DemoPerson,
    acute_attendance,
    community_care,
    gp_summary,
    mental_health,
    social_care,
    synthetic_nhs_number,
)
from ingestion.models import FeedCredential, FeedMessage, MessageKind
from ingestion.processing import feed_message_process
from ingestion.receiving import feed_message_receive
from optout.models import OptOut, OptOutRoute
from optout.services import optout_register
from sharedrecord.models import Organisation, OrganisationKind, Patient, User
from sharedrecord.organisations import organisation_grant_optout_management

BASE_DIR = Path(__file__).resolve().parent.parent
# Third-party public fixtures, vendored with their licences (tests/fixtures/external/README.md).
EXTERNAL = BASE_DIR / "tests" / "fixtures" / "external"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
_serial = itertools.count(500)


def next_nhs_number() -> str:
    return synthetic_nhs_number(next(_serial) * 3)


def make_organisation(**overrides: Any) -> Organisation:
    n = next(_serial)
    values: dict[str, Any] = {
        "ods_code": f"ZT{n:04d}",
        "name": f"Test organisation {n}",
        "kind": OrganisationKind.ACUTE,
        "dsa_start": datetime.date(2025, 1, 1),
    }
    values.update(overrides)
    return Organisation.objects.create(**values)


def make_credential(organisation: Organisation | None = None) -> tuple[FeedCredential, str]:
    return feed_credential_issue(organisation=organisation or make_organisation(), system="EPR")


def make_patient(**overrides: Any) -> Patient:
    values: dict[str, Any] = {"nhs_number": next_nhs_number(), "family_name": "Testperson"}
    values.update(overrides)
    return Patient.objects.create(**values)


def person(nhs_number: str, key: str = "t1", gp_ods: str = "Z81001") -> DemoPerson:
    """A synthetic person whose feeds carry the given NHS number."""
    return dataclasses.replace(PEOPLE[0], key=key, gp_ods=gp_ods, nhs_number_sent=nhs_number)


def gp_bundle(nhs_number: str, *, key: str = "t1", gp_ods: str = "Z81001") -> dict[str, Any]:
    """A GP practice's summary Bundle for one synthetic person."""
    return gp_summary(person(nhs_number, key=key, gp_ods=gp_ods))


def small_bundle(nhs_number: str | None, *, key: str = "s1") -> dict[str, Any]:
    """A Patient and one Condition: the smallest useful message."""
    builder = BundleBuilder(person(nhs_number or "", key=key), "ZT", key).patient()
    if nhs_number is None:
        builder.entries[0]["resource"].pop("identifier")
    builder.add(
        "Condition",
        {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}},
    )
    return builder.bundle()


def with_nhs_number(bundle: dict[str, Any], number: str) -> dict[str, Any]:
    """A copy of a bundle whose Patient carries an NHS number, as a UK source would send it."""
    bundle = copy.deepcopy(bundle)
    for entry in bundle["entry"]:
        resource = entry.get("resource", {})
        if resource.get("resourceType") == "Patient":
            resource.setdefault("identifier", []).insert(0, {"system": NHS, "value": number})
    return bundle


def external_json(*parts: str) -> dict[str, Any]:
    return dict(json.loads((EXTERNAL.joinpath(*parts)).read_text()))


def synthea_files() -> list[Path]:
    return sorted(
        p for p in (EXTERNAL / "synthea-smart-r4").glob("*.json") if p.name != "MANIFEST.json"
    )


HL7_DIRS = (EXTERNAL / "hl7v2-ms-fhir-converter", EXTERNAL / "hl7v2-cdc-trusted-intermediary")


# JSON numbers as a sender writes them: json.dumps writes 5.10 as 5.1, so a document
# carries these placeholders and `as_sent` replaces them with the text.
DECIMAL_VALUE, DECIMAL_LOW, DECIMAL_HIGH = 111.125, 222.125, 333.125
DECIMALS_SENT = {"111.125": "5.10", "222.125": "3.50", "333.125": "5.10E+0"}


def as_sent(document: dict[str, Any]) -> bytes:
    """The document's JSON text with the decimal placeholders written as a sender would."""
    text = json.dumps(document)
    for placeholder, sent in DECIMALS_SENT.items():
        text = text.replace(placeholder, sent)
    return text.encode()


def hl7_message(
    nhs_number: str | None,
    *,
    control_id: str = "C1",
    event: str = "A01",
    visit: str = "V1001",
    family: str = "ELLISON",
    given: str = "MARGARET",
    birth: str = "19410314",
    body: str = "",
    charset: str = "",
) -> str:
    """A UK-style ADT message (v2.4) for a synthetic person, CR-separated."""
    ids = f"{nhs_number}^^^NHS^NH~M{visit}^^^ZAC01^MR" if nhs_number else f"M{visit}^^^ZAC01^MR"
    msh = (
        f"MSH|^~\\&|PAS|ZAC01|SHAREDRECORD|BOROUGH|20261120101500||ADT^{event}|{control_id}|P|2.4"
        + (f"||||||{charset}" if charset else "")
    )
    segments = [
        msh,
        f"EVN|{event}|20261120101500",
        f"PID|1||{ids}||{family}^{given}^^^MRS||{birth}|F|||4 MILL LANE^^BOROUGH TOWN^^ZZ1 1AA",
        "PD1|||RIVERSIDE MEDICAL PRACTICE^^Z81001",
        f"PV1|1|E|ED^MAJORS^BAY 3||||||||||||||||{visit}|||||||||||||||||||||||||20261120094500"
        + ("|20261120160000" if event == "A03" else ""),
    ]
    if body:
        segments.append(body)
    return "\r".join(segments) + "\r"


def hl7_fixture(name: str) -> bytes:
    for folder in HL7_DIRS:
        path = folder / name
        if path.exists():
            return path.read_bytes()
    raise FileNotFoundError(name)


def hl7_with_nhs_number(payload: bytes, number: str) -> bytes:
    """The message with an NHS number added to PID-3, as a UK sender would send it."""
    text = payload.decode("utf-8-sig", errors="replace").replace("\r\n", "\r").replace("\n", "\r")
    segments = text.split("\r")
    for i, segment in enumerate(segments):
        if segment.startswith("PID"):
            fields = segment.split("|")
            while len(fields) < 4:
                fields.append("")
            fields[3] = f"{number}^^^NHS^NH" + (f"~{fields[3]}" if fields[3] else "")
            segments[i] = "|".join(fields)
    return "\r".join(segments).encode()


def hl7_with_control_id(payload: bytes, control_id: str) -> bytes:
    """The message under a new MSH-10: the same id with different content is refused."""
    first, rest = payload.decode("utf-8", errors="replace").split("\r", 1)
    fields = first.split("|")
    fields[9] = control_id
    return ("|".join(fields) + "\r" + rest).encode()


# ------------------------------------------------------------------ feeding the pipeline


def feed_kind(
    credential: Any, kind: MessageKind, payload: bytes, *, process: bool = True
) -> FeedMessage:
    """Receive a message of any kind as the HTTP edge would, then process it here."""
    received = feed_message_receive(
        credential=credential, kind=kind, payload=payload, idempotency_key="", entry_count=1
    )
    if process:
        feed_message_process(message_id=received.message.pk)
    return FeedMessage.objects.get(pk=received.message.pk)


def feed(credential: Any, bundle: dict[str, Any], *, process: bool = True) -> FeedMessage:
    """Receive and process one FHIR JSON bundle, as the HTTP edge and the worker would."""
    return feed_kind(
        credential, MessageKind.FHIR_JSON, json.dumps(bundle).encode(), process=process
    )


PARTNERS = {
    "Z81001": ("Riverside Medical Practice", "gp-practice"),
    "ZAC01": ("Borough General Hospital", "acute"),
    "ZCM01": ("Borough Community Health", "community"),
    "ZSC01": ("Borough Adult Social Care", "social-care"),
    # The trust that feeds the person's mental health care. The
    # unrelated_clinician persona works at another trust (ZMH01), with no
    # relationship: an organisation's own active care is a relationship.
    "ZMH02": ("Borough Mental Health", "mental-health"),
}


def partner(ods: str) -> Organisation:
    """One of the borough's feeding partners (created on first use)."""
    name, kind = PARTNERS[ods]
    phone = "01632 960 101" if kind == "gp-practice" else ""
    organisation, _ = Organisation.objects.get_or_create(
        ods_code=ods,
        defaults={"name": name, "kind": kind, "dsa_start": "2025-01-01", "phone": phone},
    )
    return organisation


def day_shown(days_ago: int) -> str:
    """The day the demo's `_ago(days_ago)` falls on, as pages write it ("26 Oct 2025").

    The demo dates its entries from today, so a test names their days this way, never as
    fixed dates (they would be wrong tomorrow).
    """
    day = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days_ago)
    return f"{day.day} {day:%b %Y}"


def fed_person(key: str = "rec") -> Patient:
    """A synthetic person with a GP summary, an A&E visit, community and social care, and
    a restricted mental health diagnosis: every partner's feed, through the real pipeline."""
    someone = dataclasses.replace(PEOPLE[0], key=key, nhs_number_sent=next_nhs_number())
    for ods, bundle in (
        ("Z81001", gp_summary(someone)),
        ("ZAC01", acute_attendance(someone)),
        ("ZCM01", community_care(someone)),
        ("ZSC01", social_care(someone)),
        ("ZMH02", mental_health(someone)),
    ):
        credential, _ = make_credential(partner(ods))
        message = feed(credential, bundle)
        assert message.status == "done", message.issues
    return Patient.objects.get(nhs_number=someone.nhs_number)


# Why ingestion parks a person's entries (ingestion.models.ParkReason), each made by parking_feed.
PARK_REASONS = ("no-nhs-number", "invalid-nhs-number", "demographics-conflict", "unknown-patient")


def invalid_nhs_number() -> str:
    """Ten digits whose check digit is wrong."""
    valid = next_nhs_number()
    return valid[:9] + str((int(valid[9]) + 1) % 10)


def clinical_bundle(number: str | None, *, key: str, text: str, birth: str = "") -> dict[str, Any]:
    """A Patient and a Condition whose coding display and text are `text` (clinical content)."""
    bundle = small_bundle(number, key=key)
    condition = bundle["entry"][1]["resource"]
    condition["code"]["coding"][0]["display"] = text
    condition["code"]["text"] = text
    if birth:
        bundle["entry"][0]["resource"]["birthDate"] = birth
    return bundle


def parking_feed(
    credential: Any, reason: str, *, key: str, text: str, nhs_number: str = ""
) -> FeedMessage:
    """Feed a message whose entries the worker parks for `reason` (one of PARK_REASONS).

    A demographics conflict first files the person (under `nhs_number`, or a
    new one) with another date of birth; an unknown patient is a Condition
    naming a Patient id the sender never sent.
    """
    if reason == "no-nhs-number":
        return feed(credential, clinical_bundle(None, key=key, text=text))
    if reason == "invalid-nhs-number":
        return feed(credential, clinical_bundle(invalid_nhs_number(), key=key, text=text))
    if reason == "demographics-conflict":
        number = nhs_number or next_nhs_number()
        first = feed(credential, clinical_bundle(number, key=key + "-first", text=text + " (1)"))
        assert first.status == "done", first.issues
        return feed(credential, clinical_bundle(number, key=key, text=text, birth="1990-01-01"))
    assert reason == "unknown-patient", reason
    condition_id = f"{key}-condition"
    bundle = {
        "resourceType": "Bundle", "type": "transaction", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
        "entry": [{
            "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, condition_id)}",
            "resource": {
                "resourceType": "Condition", "id": condition_id,
                "subject": {"reference": f"Patient/{key}-never-sent"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003",
                                     "display": text}], "text": text},
            },
            "request": {"method": "PUT", "url": f"Condition/{condition_id}"},
        }],
    }  # fmt: skip
    return feed(credential, bundle)


def make_optout(nhs_number: str, practice: Organisation) -> OptOut:
    """The practice's active opt-out for the person (recorded by the system, as a feed would)."""
    return optout_register(
        nhs_number=nhs_number, practice=practice, route=OptOutRoute.PRACTICE_REQUEST,
        recorded_by_system="test",
    ).optout  # fmt: skip


# ------------------------------------------------------------------ staff on the pages


def grant_optout_management(user: User) -> None:
    """Let the member of a GP practice manage the practice's opt-outs."""
    assert user.organisation is not None
    organisation_grant_optout_management(user=user, organisation=user.organisation)


# The programme's own governance team: reads the whole trail (settings.GOVERNANCE_ODS_CODES).
PROGRAMME_ODS = "ZSR01"


def make_staff(ods: str, kind: str, role: str) -> User:
    """A member of staff with a unique username at the organisation (created on first use)."""
    organisation, _ = Organisation.objects.get_or_create(
        ods_code=ods, defaults={"name": f"Org {ods}", "kind": kind, "dsa_start": "2025-01-01"}
    )
    return User.objects.create_user(
        f"{role}.{uuid.uuid4().hex[:8]}", password="persona-password-123",
        organisation=organisation, role=role,
    )  # fmt: skip


def make_officer(ods: str = PROGRAMME_ODS, kind: str = "other") -> User:
    """A privacy officer: the programme's (whole trail) unless another organisation is given."""
    return make_staff(ods, kind, "privacy-officer")


def signed_in(client: Client, user: User) -> Client:
    """The given test client, signed in as the user."""
    client.force_login(user)
    return client


def client_for(user: User) -> Client:
    """A new browser session with the user signed in."""
    return signed_in(Client(), user)


def confirm_basis(client: Client, patient: Patient, claim: str = "") -> Any:
    """Confirm direct care for the person (with a self-declared role if claim is given)."""
    return client.post(
        f"/access/{patient.public_id}/",
        {"confirm": "yes", "claimed_relationship": claim},
    )


def main_html(response: Any) -> str:
    """The page's <main> element: what the page says, without the navigation around it."""
    found = re.search(r"<main.*?</main>", response.content.decode(), flags=re.DOTALL)
    assert found is not None, response.content[:500]
    return found.group(0)


def shown_entries(response: Any) -> set[str]:
    """The public ids of the record entries a page shows (in its body, not the banner)."""
    return set(re.findall(r'data-entry="([0-9a-f-]{36})"', response.content.decode()))


def banner_entries(response: Any) -> list[str]:
    """The public ids of the entries the patient banner names (its alerts), in order."""
    return re.findall(r'data-banner-entry="([0-9a-f-]{36})"', response.content.decode())


# ------------------------------------------------------------------ the opt-out API


def optout_api_register(client: Client, number: str, note: str = "") -> Any:
    """POST /api/v1/optouts/register as the signed-in client."""
    return client.post(
        "/api/v1/optouts/register",
        {"nhs_number": number, "note": note},
        content_type="application/json",
    )


def optout_api_withdraw(client: Client, number: str) -> Any:
    """POST /api/v1/optouts/withdraw as the signed-in client."""
    return client.post(
        "/api/v1/optouts/withdraw", {"nhs_number": number}, content_type="application/json"
    )


def streamed(response: object) -> str:
    """The whole body of a streamed response (CSV exports), as text."""
    return b"".join(cast(StreamingHttpResponse, response).streaming_content).decode()  # type: ignore[arg-type]


# ------------------------------------------------------------------ hostile input


def deeply_nested_json(depth: int) -> str:
    """A Bundle whose first Patient carries an extension nested `depth` JSON levels deep."""
    bundle = small_bundle(next_nhs_number())
    bundle["entry"][0]["resource"]["extension"] = "__deep__"
    marker = '"__deep__"'
    head, tail = json.dumps(bundle).split(marker)
    # Bundle, entry, the entry and its resource are 4 levels; the innermost array and
    # object 2 more; each pair around them is an array holding an object.
    pairs = max(0, (depth - 6) // 2)
    inner = '{"url": "http://example.org/x", "valueString": "x"}'
    deep = '[{"url": "http://example.org/x", "extension": ' * pairs + "[" + inner + "]"
    deep += "}]" * pairs
    return head + deep + tail


def deeply_nested_xml(depth: int) -> str:
    """A Bundle in XML whose Patient nests extensions so the deepest element is at `depth`."""
    # Bundle, entry, resource, Patient and the innermost valueString are 5 levels.
    levels = depth - 5
    extensions = '<extension url="http://example.org/x">' * levels
    extensions += '<valueString value="x"/>' + "</extension>" * levels
    return (
        '<Bundle xmlns="http://hl7.org/fhir"><id value="deep"/><type value="collection"/>'
        '<entry><fullUrl value="urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"/><resource>'
        f'<Patient><id value="p1"/>{extensions}<identifier>'
        '<system value="https://fhir.nhs.uk/Id/nhs-number"/>'
        f'<value value="{next_nhs_number()}"/></identifier></Patient></resource></entry></Bundle>'
    )


# ------------------------------------------------------------------ processes under test


def wait_until_listening(proc: subprocess.Popen[bytes], port: int, name: str) -> None:
    """Wait (up to 30 s) until a started process accepts TCP on 127.0.0.1:port."""
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, f"{name} exited"
            assert time.monotonic() < deadline, f"{name} did not start"
            time.sleep(0.2)


def feed_long_results(record: Patient, count: int) -> None:
    """`count` more results from the practice, one a day going back (through the real feed)."""
    someone = dataclasses.replace(
        PEOPLE[0], key=f"long-{record.pk}", nhs_number_sent=record.nhs_number
    )
    builder = BundleBuilder(someone, "Z81001", "long").patient()
    today = timezone.now()
    for day in range(count):
        builder.add(
            "Observation",
            {
                "status": "final",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1000"}]},
                "effectiveDateTime": (today - datetime.timedelta(days=day)).isoformat(),
                "valueQuantity": {"value": day, "unit": "mmol/L"},
            },
        )
    credential, _ = make_credential(partner("Z81001"))
    message = feed(credential, builder.bundle())
    assert message.status == "done", message.issues
