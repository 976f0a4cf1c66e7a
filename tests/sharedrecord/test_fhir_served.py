"""The read API serves each stored resource exactly: the fast text (SERVED_SQL) against the rule.

Every served resource is the stored one with our id, `meta.source` and
`meta.lastUpdated` (the rest of the source's meta kept) and its subject or
patient Reference pointed at the person, whatever the source sent in those
places, with text that needs escaping, after an update and after the entries
move to another person. Both doors are checked: $everything pages and a read
by id.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from sharedrecord.entries import entries_upsert, patient_create, patient_lock
from sharedrecord.entrydata import EntryData
from sharedrecord.fhir_read import ORD_URL
from sharedrecord.models import Entry, Organisation, Patient
from tests.factories import next_nhs_number, partner
from tests.fhirapi import fhir_get, partner_token

pytestmark = pytest.mark.django_db

SYSTEM = 'EMIS Web "v2" \\ ü'
PRACTICE = "Z81001"

RESOURCES: list[tuple[str, str, dict[str, Any]]] = [
    ("Condition", "problems", {
        "resourceType": "Condition", "id": "src-1",
        "meta": {"versionId": "3", "source": "urn:theirs", "lastUpdated": "2020-01-01T00:00:00Z",
                 "security": [{"system": "urn:s", "code": "N"}], "tag": [{"code": "t"}]},
        "subject": {"reference": "Patient/their-id", "display": 'Ann "Nan" Smith'},
        "code": {"text": 'Asthma "brittle" \\ \u00e9 \u2603 \n line'},
    }),
    ("Observation", "results", {
        "resourceType": "Observation", "id": "src-2", "status": "final",
        "meta": {"source": "urn:only-source"},
        "subject": {"reference": "Patient/their-id"},
        "valueQuantity": {"value": 5.25, "unit": "mmol/L"},
    }),
    ("AllergyIntolerance", "allergies", {
        "resourceType": "AllergyIntolerance", "id": "src-3",
        "patient": {"identifier": {"system": "urn:x", "value": "1"}},
        "code": {"text": "Penicillin"},
    }),
    ("Immunization", "immunisations", {
        "resourceType": "Immunization", "status": "completed",
        "meta": {}, "patient": {}, "vaccineCode": {"text": "Flu"},
    }),
    ("Encounter", "encounters", {
        "resourceType": "Encounter", "id": "src-5", "status": "finished",
        "subject": "not a Reference", "class": {"code": "AMB"},
    }),
]  # fmt: skip


def _items(resources: list[tuple[str, str, dict[str, Any]]]) -> list[EntryData]:
    return [
        EntryData(
            resource_type=kind,
            source_id=f"src-{n}",
            section=section,
            resource=resource,
            content_hash=hashlib.sha256(json.dumps(resource, sort_keys=True).encode()).hexdigest(),
            effective_at=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
            status=str(resource.get("status", "")),
        )
        for n, (kind, section, resource) in enumerate(resources, start=1)
    ]


def _person(practice: Organisation) -> Patient:
    number = next_nhs_number()
    with transaction.atomic():
        patient_lock(nhs_number=number)
        patient = patient_create(nhs_number=number)
        patient.registered_gp_ods = practice.ods_code
        patient.save()
    return patient


def _store(patient: Patient, practice: Organisation, resources: Any) -> None:
    with transaction.atomic():
        patient_lock(nhs_number=patient.nhs_number)
        entries_upsert(
            patient=patient, source_org=practice, source_system=SYSTEM, items=_items(resources),
            feed_message_id=None,
        )  # fmt: skip


def expected(entry: Entry, person: Patient) -> dict[str, Any]:
    """The rule, in Python: what the API must serve for this stored entry."""
    served: dict[str, Any] = copy.deepcopy(entry.resource)
    served["id"] = str(entry.public_id)
    stored_meta = served.get("meta")
    meta: dict[str, Any] = stored_meta if isinstance(stored_meta, dict) else {}
    served["meta"] = {
        **meta,
        "source": f"{ORD_URL}{entry.source_org.ods_code}#{SYSTEM.replace(' ', '%20')}",
        "lastUpdated": entry.updated_at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    for key in ("subject", "patient"):
        if isinstance(served.get(key), dict):
            served[key] = {**served[key], "reference": f"Patient/{person.public_id}"}
    return served


def _served(client: Client, token: str, person: Patient) -> dict[str, dict[str, Any]]:
    """Every entry of the person's $everything, by id, and each again read by id."""
    bundle = fhir_get(client, token, f"Patient/{person.public_id}/$everything").json_body
    found = {
        e["resource"]["id"]: e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] != "Patient"
    }
    for key, resource in found.items():
        read = fhir_get(client, token, f"{resource['resourceType']}/{key}")
        assert read.status_code == 200
        assert read.json_body == resource
    return found


def _check(client: Client, token: str, person: Patient) -> None:
    entries = Entry.objects.filter(patient=person).select_related("source_org")
    served = _served(client, token, person)
    assert served == {str(e.public_id): expected(e, person) for e in entries}


def test_every_resource_is_served_as_stored_with_our_id_provenance_and_reference(
    client: Client,
) -> None:
    practice = partner(PRACTICE)
    person = _person(practice)
    _store(person, practice, RESOURCES)
    token = partner_token(client, practice, role="gp")
    _check(client, token, person)

    # A new version: what is served follows what is stored.
    changed = copy.deepcopy(RESOURCES)
    changed[0][2]["meta"]["versionId"] = "4"
    changed[0][2]["code"] = {"text": "Asthma, resolved"}
    del changed[1][2]["meta"]
    changed[1][2]["subject"] = {"display": "no reference now"}
    _store(person, practice, changed)
    assert Entry.objects.get(patient=person, source_id="src-1").resource["code"] == {
        "text": "Asthma, resolved"
    }
    _check(client, token, person)

    # The entries move to another person (as a merge moves them): the reference follows.
    other = _person(practice)
    Entry.objects.filter(patient=person).update(patient=other)
    _check(client, token, other)


def test_a_page_is_as_big_as_the_client_asks_up_to_the_configured_most(
    client: Client, settings: Any
) -> None:
    settings.FHIR_PAGE_MAX = 2
    practice = partner(PRACTICE)
    person = _person(practice)
    _store(person, practice, RESOURCES)
    token = partner_token(client, practice, role="gp")
    path: str | None = f"Patient/{person.public_id}/$everything"
    params: dict[str, str] | None = {"_count": "5000", "_type": ",".join(r[0] for r in RESOURCES)}
    pages: list[list[str]] = []
    while path:
        bundle = fhir_get(client, token, path, params).json_body
        pages.append([e["resource"]["id"] for e in bundle.get("entry", [])])
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        path = following[0].split("/fhir/R4/", 1)[1] if following else None
        params = None
    assert [len(page) for page in pages] == [2, 2, 1]
    shown = [key for page in pages for key in page]
    assert sorted(shown) == sorted(str(e.public_id) for e in Entry.objects.filter(patient=person))
