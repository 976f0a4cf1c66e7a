"""Sensitivity by code: an item is restricted when any of its codings is on a sensitive list,
whatever labels its sender set (results, conditions and documents of every category)."""

from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ingestion.demo import PEOPLE, BundleBuilder
from ingestion.fhir.fields import codes_of
from sharedrecord.access import _array_literal, entries_visible, view_policy_for
from sharedrecord.models import Entry, Patient, User
from sharedrecord.policy import policy_table
from sharedrecord.record import SUMMARY_CURRENT
from tests.factories import (
    confirm_basis,
    feed,
    main_html,
    make_credential,
    next_nhs_number,
    partner,
    signed_in,
)
from tests.fhirapi import fhir_get, staff_token

pytestmark = pytest.mark.django_db

SNOMED, LOINC = "http://snomed.info/sct", "http://loinc.org"
# One code per category, each from the policy's lists: (category, system, code, words).
CASES = [
    ("sexual-health", LOINC, "75622-1", "HIV 1 and 2 tests"),
    ("sexual-health", SNOMED, "86406008", "HIV infection"),
    ("gender-identity", LOINC, "76691-5", "Gender identity"),
    ("gender-identity", SNOMED, "93461009", "Gender dysphoria"),
    ("assisted-conception", SNOMED, "52637005", "In vitro fertilisation"),
    ("mental-health", SNOMED, "58214004", "Schizophrenia"),
    ("safeguarding", SNOMED, "706893006", "Victim of intimate partner abuse"),
    ("safeguarding", LOINC, "28245-9", "Abuse status"),
]


def _cc(system: str, code: str, words: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}], "text": words}


def sensitive_record() -> Patient:
    """A person registered with Z81001 (its own feed says so), and a community trust's
    feed with, for every case, an unlabelled result, problem and document whose coding
    is sensitive somewhere in it; plus an ordinary result and one coded with no system."""
    number = next_nhs_number()
    person = dataclasses.replace(PEOPLE[0], key=f"sc{number}", nhs_number_sent=number)
    registration = BundleBuilder(person, "Z81001", "reg").patient().bundle()
    assert feed(make_credential(partner("Z81001"))[0], registration).status == "done"
    builder = BundleBuilder(person, "ZCM01", "sens").patient()
    laboratory = _cc(LOINC, "4548-4", "HbA1c")  # an ordinary test, to carry a sensitive value
    for i, (_, system, code, words) in enumerate(CASES):
        coded = _cc(system, code, words)
        builder.add(
            "Observation",
            {"status": "final", "code": coded if system == LOINC else laboratory,
             "valueCodeableConcept": coded if system == SNOMED else _cc(SNOMED, "10828004", "Positive"),
             "effectiveDateTime": f"2026-0{1 + i % 9}-10", "note": [{"text": f"result {words}"}]},
        )  # fmt: skip
        builder.add(
            "Condition",
            {"code": {"text": f"problem {words}"}, "evidence": [{"code": [coded]}],
             "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical",
                                   "active", "Active")},
        )  # fmt: skip
        builder.add(
            "DocumentReference",
            {"status": "current",
             "type": _cc(LOINC, "34133-9", f"letter {words}"),
             "context": {"event": [coded]},
             "content": [{"attachment": {"contentType": "text/plain", "data": "TGV0dGVy"}}]},
        )  # fmt: skip
    builder.add(
        "Observation",
        {"status": "final", "code": laboratory, "valueQuantity": {"value": 41, "unit": "mmol/mol"},
         "effectiveDateTime": "2026-10-01", "note": [{"text": "ordinary result"}]},
    )  # fmt: skip
    builder.add(
        "Condition",
        {"code": {"coding": [{"code": "86406008"}], "text": "problem with no code system"},
         "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical",
                               "active", "Active")},
    )  # fmt: skip
    credential, _ = make_credential(partner("ZCM01"))
    message = feed(credential, builder.bundle())
    assert message.status == "done", message.issues
    return Patient.objects.get(nhs_number=number)


def test_every_case_code_is_on_its_categorys_list() -> None:
    categories = {c.key: c.codes for c in policy_table().sensitivity.categories}
    for category, system, code, _ in CASES:
        assert f"{system}|{code}" in categories[category]


def test_coded_items_are_restricted_without_any_label(
    client: Client, registered_gp, treating_clinician
) -> None:
    patient = sensitive_record()
    stored = Entry.objects.filter(patient=patient).exclude(resource_type="Patient")
    assert all(entry.sensitivity == [] for entry in stored)  # the sender set no labels
    restricted = 3 * len(CASES) + 1  # and the problem coded with no system

    signed_in(client, treating_clinician)
    confirm_basis(client, patient, claim="Seen in the emergency department today")
    for section in ("results", "problems", "documents"):
        page = main_html(client.get(f"/record/{patient.public_id}/{section}"))
        for _, _, _, words in CASES:
            assert words not in page, (section, words)
        assert "no code system" not in page
        assert f"{restricted} items withheld" in page
    assert "ordinary result" in main_html(client.get(f"/record/{patient.public_id}/results"))
    token = staff_token(client, treating_clinician)
    everything = fhir_get(
        client, token, f"Patient/{patient.public_id}/$everything", {"_count": 1000}
    ).json_body
    text = json.dumps(everything)
    assert "ordinary result" in text
    for _, _, _, words in CASES:
        assert words not in text

    signed_in(client, registered_gp)
    confirm_basis(client, patient)
    for section, prefix in (
        ("results", "result"),
        ("problems", "problem"),
        ("documents", "letter"),
    ):
        page = main_html(client.get(f"/record/{patient.public_id}/{section}"))
        for _, _, _, words in CASES:
            assert f"{prefix} {words}" in page, (section, words)
        assert "Sensitive" in page
        assert "withheld" not in page


def test_an_unrelated_viewers_policy_binds_the_sensitive_codes_once_and_withholds_them(
    treating_clinician,
) -> None:
    # Hundreds of codes as one array literal each statement binds once, not a value (or an
    # expression) per code: those took tens of milliseconds a page (issue 20).
    codes = sorted(policy_table().sensitivity.sensitive_codes)
    assert len(codes) > 100
    patient = sensitive_record()
    viewer = User.objects.select_related("organisation").get(pk=treating_clinician.pk)
    policy = view_policy_for(viewer=viewer, basis_kind="direct-care", relationships=())
    assert not policy.restricted_visible
    statement = entries_visible(patient=patient, policy=policy).entries
    _, params = statement.query.sql_with_params()
    assert len(params) < 50
    (literal,) = {p for p in params if isinstance(p, str) and p.startswith("{")}
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text[]", [literal])
        assert sorted(cursor.fetchone()[0]) == codes
    assert statement.count() == Entry.objects.filter(patient=patient).count() - 3 * len(CASES) - 1


def test_the_summary_chooses_its_lists_with_the_policy_once_not_once_a_list(
    client: Client, registered_gp, treating_clinician
) -> None:
    # The summary's ten lists are chosen in one statement. The policy (with its
    # hundreds of sensitive codes) is in it once for the care lists and once for the
    # person's own entry (twice there: its demographics rule asks what else of the
    # source is shown), not in each list's branch: building, compiling and binding it
    # ten times cost more than PostgreSQL's answer (issue 20).
    patient = sensitive_record()
    signed_in(client, treating_clinician)
    confirm_basis(client, patient, claim="Seen in the emergency department today")
    with CaptureQueriesContext(connection) as queries:
        page = main_html(client.get(f"/record/{patient.public_id}/"))
    choosing = [q["sql"] for q in queries.captured_queries if "UNION ALL" in q["sql"]]
    assert len(choosing) == 1
    assert 1 <= choosing[0].count('"http://loinc.org|75622-1"') <= 3  # a sensitive code
    for _, _, _, words in CASES:
        assert words not in page
    assert "ordinary result" in page  # the latest result, not coded as sensitive
    # Nor are the withheld items counted in a list's total (they are counted once, overall).
    assert "See all" not in page

    signed_in(client, registered_gp)
    confirm_basis(client, patient)
    page = main_html(client.get(f"/record/{patient.public_id}/"))
    shown = sum(f"problem {words}" in page for _, _, _, words in CASES)
    assert shown == SUMMARY_CURRENT - ("problem with no code system" in page)
    assert f"See all {len(CASES) + 1}" in page  # the coded problems, and the one with no system


def test_the_array_literal_keeps_quotes_backslashes_commas_and_braces() -> None:
    values = frozenset({'a"b', "c\\d", "e,f", "{g}", "h i", "NULL", ""})
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text[]", [_array_literal(values)])
        assert sorted(cursor.fetchone()[0]) == sorted(values)


def test_stored_entries_keep_every_coding(registered_gp) -> None:
    patient = sensitive_record()
    document = Entry.objects.filter(patient=patient, resource_type="DocumentReference").first()
    assert document is not None
    assert f"{LOINC}|34133-9" in document.codes
    assert any(code.startswith(SNOMED) or code.startswith(LOINC) for code in document.codes)


def test_the_migrations_backfill_computes_the_same_codes_as_ingestion() -> None:
    """Entries stored before Entry.codes existed get the set ingestion gives new ones."""
    migration = importlib.import_module(
        "sharedrecord.migrations.0006_entry_codes_disputed_demographics"
    )
    patient = sensitive_record()
    stored = list(Entry.objects.filter(patient=patient))
    expected = {entry.pk: list(codes_of(entry.resource)) for entry in stored}
    Entry.objects.filter(patient=patient).update(codes=[])
    with connection.cursor() as cursor:
        cursor.execute(migration.BACKFILL_SQL, [min(expected), max(expected) + 1])
    assert {e.pk: e.codes for e in Entry.objects.filter(patient=patient)} == expected
    assert any(codes for codes in expected.values())
