"""Events derived in the ingestion transaction: each kind, once per fact, never for opted-out people."""

from __future__ import annotations

import datetime

import pytest

from ingestion.models import MessageKind
from sharedrecord.models import Patient
from sharedrecord.notifications.models import Event
from tests.factories import feed, feed_kind, make_credential, make_optout, next_nhs_number, partner
from tests.notifications.feeds import (
    builder,
    deceased_bundle,
    encounter,
    every_kind_bundle,
    hl7_adt,
    hl7_death,
    hl7_mdm,
    hl7_oru,
)

pytestmark = pytest.mark.django_db


def kinds(number: str) -> list[str]:
    return sorted(Event.objects.filter(patient__nhs_number=number).values_list("kind", flat=True))


def test_it_derives_every_kind_from_a_fhir_feed_once() -> None:
    number = next_nhs_number()
    credential, _ = make_credential(partner("ZAC01"))
    sent = every_kind_bundle(number, "ZAC01")
    message = feed(credential, sent)
    assert message.status == "done", message.issues
    assert kinds(number) == [
        "admission",
        "ae-attendance",
        "alert",
        "care-plan",
        "document",
        "result",
    ]
    assert Event.objects.get(patient__nhs_number=number, kind="result").abnormal
    # A re-send changes nothing, so derives nothing.
    feed(credential, sent)
    assert len(kinds(number)) == 6


def test_it_flags_a_normal_result_as_not_abnormal() -> None:
    number = next_nhs_number()
    credential, _ = make_credential(partner("ZAC01"))
    feed(credential, every_kind_bundle(number, "ZAC01", abnormal=False))
    assert not Event.objects.get(patient__nhs_number=number, kind="result").abnormal


def test_a_discharge_is_a_new_fact_of_the_same_encounter() -> None:
    number = next_nhs_number()
    credential, _ = make_credential(partner("ZAC01"))
    admitted = builder(number, "ZAC01", "d1").add("Encounter", encounter("IMP", "in-progress"))
    feed(credential, admitted.bundle())
    discharged = builder(number, "ZAC01", "d1").add("Encounter", encounter("IMP", "finished"))
    discharged.entries[1]["resource"]["meta"] = {"versionId": "2"}
    feed(credential, discharged.bundle())
    assert kinds(number) == ["admission", "discharge"]


def test_a_death_is_one_fact_whoever_says_it() -> None:
    number = next_nhs_number()
    for ods in ("ZAC01", "Z81001"):
        credential, _ = make_credential(partner(ods))
        feed(credential, deceased_bundle(number, ods))
    assert kinds(number) == ["death"]


def test_an_old_fact_is_not_news() -> None:
    number = next_nhs_number()
    credential, _ = make_credential(partner("ZAC01"))
    old = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)).isoformat()
    feed(credential, builder(number, "ZAC01", "o1").add(
        "Encounter", encounter("IMP", "finished", when=old)).bundle())  # fmt: skip
    assert Patient.objects.filter(nhs_number=number).exists()
    assert kinds(number) == []


def test_it_derives_every_hl7_v2_kind() -> None:
    number = next_nhs_number()
    credential, _ = make_credential(partner("ZAC01"))
    for payload in (
        hl7_adt(number, "A04", patient_class="E", control_id="E1", visit="V31"),
        hl7_adt(number, "A01", patient_class="I", control_id="E2", visit="V32"),
        hl7_adt(number, "A03", patient_class="I", control_id="E3", visit="V32"),
        hl7_oru(number, control_id="E4"),
        hl7_mdm(number, control_id="E5"),
        hl7_death(number, control_id="E6"),
    ):
        message = feed_kind(credential, MessageKind.HL7V2, payload)
        assert message.status == "done", message.issues
    assert kinds(number) == [
        "admission", "ae-attendance", "death", "discharge", "document", "result",
    ]  # fmt: skip
    assert Event.objects.get(patient__nhs_number=number, kind="result").abnormal


def test_nothing_is_derived_for_an_opted_out_person() -> None:
    number = next_nhs_number()
    make_optout(number, partner("Z81001"))
    credential, _ = make_credential(partner("ZAC01"))
    feed(credential, every_kind_bundle(number, "ZAC01"))
    assert not Event.objects.filter(patient__nhs_number=number).exists()
    assert not Patient.objects.filter(nhs_number=number).exists()


def test_an_opt_out_purges_the_persons_events() -> None:
    number = next_nhs_number()
    credential, _ = make_credential(partner("ZAC01"))
    feed(credential, every_kind_bundle(number, "ZAC01"))
    assert kinds(number)
    make_optout(number, partner("Z81001"))
    assert not Event.objects.filter(patient__nhs_number=number).exists()
