"""Helpers for the clinical fidelity tests: probe entries through the real feed, pages and API.

Every probe is sent as a partner would send it (a FHIR Bundle through the
feed pipeline), read by a GP on the record pages and through the FHIR API,
and compared with what was sent.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import html
import re
import zoneinfo
from typing import Any

from django.test import Client

from ingestion.demo import PEOPLE, BundleBuilder
from sharedrecord import fhirjson
from sharedrecord.models import Entry, Patient, User
from tests.factories import (
    confirm_basis,
    feed,
    main_html,
    make_credential,
    next_nhs_number,
    partner,
    signed_in,
)
from tests.fhirapi import body, fhir_get

# Where each type names its person (as ingestion reads it).
SUBJECT = {
    "AllergyIntolerance": "patient",
    "Immunization": "patient",
    "RelatedPerson": "patient",
    "Consent": "patient",
    "Appointment": "",
}


@dataclasses.dataclass
class Probe:
    """A person fed with probe entries, and the references each entry can be named by."""

    patient: Patient
    urls: list[str]

    def entry(self, source_id_end: str) -> Entry:
        return Entry.objects.get(patient=self.patient, source_id__endswith=source_id_end)


def bundle_for(
    resources: list[dict[str, Any]], *, number: str, ods: str, patient: dict[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    person = dataclasses.replace(PEOPLE[0], key=f"f{number}", nhs_number_sent=number, gp_ods=ods)
    builder = BundleBuilder(person, ods, "probe").patient()
    builder.entries[0]["resource"].update(patient or {})
    urls = []
    for resource in resources:
        body = {k: v for k, v in resource.items() if k != "resourceType"}
        kind = resource["resourceType"]
        builder.add(kind, body, SUBJECT.get(kind, "subject"))
        if kind == "Appointment":
            builder.entries[-1]["resource"].setdefault(
                "participant", [{"actor": {"reference": builder.patient_url}, "status": "accepted"}]
            )
        urls.append(builder.entries[-1]["fullUrl"])
    return builder.bundle(), urls


def probe(
    *resources: dict[str, Any], ods: str = "Z81001", patient: dict[str, Any] | None = None
) -> Probe:
    """Feed one person's Patient and these resources from `ods` through the real pipeline."""
    number = next_nhs_number()
    bundle, urls = bundle_for(list(resources), number=number, ods=ods, patient=patient)
    return Probe(send(bundle, ods), urls)


def send(bundle: dict[str, Any], ods: str = "Z81001") -> Patient:
    """Send one Bundle from `ods` through the real pipeline; every entry must be filed."""
    credential, _ = make_credential(partner(ods))
    message = feed(credential, bundle)
    assert message.status == "done", message.issues
    assert message.counts.get("rejected", 0) == 0, message.issues
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    return Patient.objects.get(nhs_number=patient["identifier"][0]["value"])


def page(client: Client, user: User, patient: Patient, section: str = "", claim: str = "") -> str:
    """The record page (summary, or a section) as `user` sees it, after confirming a basis."""
    signed_in(client, user)
    confirm_basis(client, patient, claim=claim)
    response = client.get(f"/record/{patient.public_id}/{section}")
    assert response.status_code == 200, response.status_code
    return main_html(response)


def words(markup: str) -> str:
    """Page markup as a reader reads it: tags gone, entities decoded, spaces collapsed."""
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())
    return re.sub(r" ([,.;:)])", r"\1", text)


def row(markup: str, entry: Entry) -> str:
    """The words of one item's row (a section's table row, or the summary's list item)."""
    found = re.search(
        rf'<(tr|li)[^>]*data-entry="{entry.public_id}".*?</\1>', markup, flags=re.DOTALL
    )
    assert found is not None, f"{entry.resource_type} {entry.source_id} is not on the page"
    return words(found.group(0))


def block(markup: str, section: str) -> str:
    """The words of one summary block (alerts, allergies, medications, problems, ...)."""
    found = re.search(
        rf'<section aria-labelledby="h-{section}">.*?</section>', markup, flags=re.DOTALL
    )
    assert found is not None, section
    return words(found.group(0))


def api_resource(client: Client, token: str, entry: Entry) -> dict[str, Any]:
    response = fhir_get(client, token, f"{entry.resource_type}/{entry.public_id}")
    assert response.status_code == 200, response.json_body
    # Read with its decimals, as the stored resource is (a float never equals a Decimal).
    resource: dict[str, Any] = fhirjson.loads(body(response))
    return resource


def exact(value: Any) -> Any:
    """The value with each Decimal as its text: Decimal("5.1") == Decimal("5.10") is true."""
    if isinstance(value, decimal.Decimal):
        return ("decimal", str(value))
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [exact(v) for v in value]
    return value


def as_sent(resource: dict[str, Any]) -> dict[str, Any]:
    """The parts of an API resource that are the source's own (not id, meta or subject)."""
    return {
        k: v
        for k, v in resource.items()
        if k not in ("id", "meta", "subject", "patient", "participant")
    }


# ------------------------------------------------------------------ oracles

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
LONDON = zoneinfo.ZoneInfo("Europe/London")

# What a clinician must read beside an item for each status code (FHIR R4 value sets);
# None: the ordinary state, which needs no word.
QUALIFIER = {
    "active": None, "confirmed": None, "final": None, "completed": "Completed",
    "refuted": "Refuted", "entered-in-error": "Entered in error", "provisional": "Provisional",
    "differential": "Differential", "unconfirmed": "Unconfirmed", "inactive": "Inactive",
    "resolved": "Resolved", "remission": "In remission", "recurrence": "Recurrence",
    "relapse": "Relapse", "stopped": "Stopped", "on-hold": "On hold", "not-taken": "Not taken",
    "intended": "Intended", "cancelled": "Cancelled", "draft": "Draft", "unknown": "Status unknown",
    "not-done": "Not done", "preliminary": "Preliminary", "amended": "Amended",
    "corrected": "Corrected", "registered": "Registered, no result yet", "partial": "Partial",
    "appended": "Appended", "finished": None, "in-progress": "In progress", "planned": "Planned",
    "revoked": "Revoked", "booked": None, "noshow": "Did not attend", "fulfilled": "Attended",
    "proposed": "Proposed", "pending": "Pending", "current": None, "superseded": "Superseded",
    "suspended": "Suspended", "arrived": "Arrived", "triaged": "Triaged",
    "preparation": "In preparation", "waitlist": "Waiting list", "checked-in": "Checked in",
    "onleave": "On leave",
}  # fmt: skip
# The status that is a type's ordinary state (a completed immunisation was given).
ORDINARY = {"Immunization": "completed", "Procedure": "completed"}


def qualifier_for(kind: str, code: str | None) -> str | None:
    """The word a clinician must read beside an item of this kind with this status."""
    if code is None or ORDINARY.get(kind) == code:
        return None
    return QUALIFIER.get(code)


def date_oracle(sent: str) -> str:
    """A FHIR date as a clinician must read it, worked out here from the string alone."""
    if re.fullmatch(r"\d{4}", sent):
        return sent
    if match := re.fullmatch(r"(\d{4})-(\d{2})", sent):
        return f"{MONTHS[int(match[2]) - 1]} {match[1]}"
    if match := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", sent):
        return f"{int(match[3])} {MONTHS[int(match[2]) - 1]} {match[1]}"
    local = datetime.datetime.fromisoformat(sent.replace("Z", "+00:00")).astimezone(LONDON)
    return f"{local.day} {MONTHS[local.month - 1]} {local.year:04d} {local:%H:%M}"
