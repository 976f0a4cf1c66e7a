"""The batch upsert: constant statements per person, moves between people, repeats in a batch."""

from __future__ import annotations

import dataclasses

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ingestion.fhir.fields import content_hash
from sharedrecord.entries import UpsertResult, entries_upsert
from sharedrecord.entrydata import EntryData
from sharedrecord.models import Entry, Organisation, Patient, SourceKey
from tests.factories import make_organisation, make_patient

pytestmark = pytest.mark.django_db


def _items(n: int, *, prefix: str = "obs", value: int = 1) -> list[EntryData]:
    items = []
    for i in range(n):
        resource = {"resourceType": "Observation", "id": f"{prefix}-{i}", "status": "final",
                    "code": {"text": "x"}, "valueQuantity": {"value": value}}  # fmt: skip
        items.append(
            EntryData(
                resource_type="Observation",
                source_id=f"{prefix}-{i}",
                section="results",
                resource=resource,
                content_hash=content_hash(resource),
            )
        )
    return items


def _upsert(patient: Patient, org: Organisation, items: list[EntryData]) -> list[UpsertResult]:
    return entries_upsert(
        patient=patient, source_org=org, source_system="EPR", items=items, feed_message_id=None
    )


def test_statements_do_not_grow_with_the_number_of_entries() -> None:
    org, patient = make_organisation(), make_patient()
    counts = []
    for n, prefix in ((5, "a"), (80, "b")):
        with CaptureQueriesContext(connection) as created:
            _upsert(patient, org, _items(n, prefix=prefix))
        with CaptureQueriesContext(connection) as updated:
            _upsert(patient, org, _items(n, prefix=prefix, value=2))
        counts.append((len(created), len(updated)))
    assert counts[0] == counts[1]
    assert Entry.objects.filter(patient=patient).count() == 85


def test_results_follow_content_and_versions() -> None:
    org, patient = make_organisation(), make_patient()
    assert _upsert(patient, org, _items(2)) == [UpsertResult.CREATED] * 2
    assert _upsert(patient, org, _items(2)) == [UpsertResult.UNCHANGED] * 2
    assert _upsert(patient, org, _items(2, value=3)) == [UpsertResult.UPDATED] * 2


def test_a_repeated_key_in_one_batch_keeps_the_last() -> None:
    org, patient = make_organisation(), make_patient()
    first, last = _items(1, value=1)[0], _items(1, value=9)[0]
    assert _upsert(patient, org, [first, last]) == [UpsertResult.UNCHANGED, UpsertResult.CREATED]
    assert Entry.objects.get(patient=patient).resource["valueQuantity"]["value"] == 9


def test_a_resource_filed_under_another_person_moves_to_them() -> None:
    org, before, after = make_organisation(), make_patient(), make_patient()
    _upsert(before, org, _items(1))
    assert _upsert(after, org, _items(1, value=5)) == [UpsertResult.CREATED]
    assert not Entry.objects.filter(patient=before).exists()
    assert Entry.objects.filter(patient=after).count() == 1
    assert SourceKey.objects.get(source_org=org, source_id="obs-0").patient == after


def test_a_resource_holding_an_integer_beyond_64_bits_is_stored_whole() -> None:
    org, patient = make_organisation(), make_patient()
    (item,) = _items(1)
    resource = item.resource | {"valueInteger": 2**70}
    big = dataclasses.replace(item, resource=resource, content_hash=content_hash(resource))
    assert _upsert(patient, org, [big]) == [UpsertResult.CREATED]
    assert Entry.objects.get(patient=patient).resource["valueInteger"] == 2**70
