"""Merges and links of people are recorded and undone exactly; an opt-out on either number wins."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from audit.models import AuditEvent
from ingestion.models import MessageKind
from sharedrecord.models import Entry, IdentityOperation, Patient, SourceKey, User
from tests.factories import (
    PROGRAMME_ODS,
    client_for,
    clinical_bundle,
    feed,
    feed_kind,
    hl7_message,
    make_credential,
    make_optout,
    make_staff,
    next_nhs_number,
    partner,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _programme(settings: Any) -> None:
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME_ODS]


@pytest.fixture
def officer() -> Client:
    return client_for(make_staff(PROGRAMME_ODS, "other", "data-quality-officer"))


def rows() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the record's identity tables, in key order: what a round trip must restore."""

    def table(model: Any) -> list[tuple[Any, ...]]:
        names = [f.attname for f in model._meta.concrete_fields]
        return [tuple(row) for row in model.objects.order_by("pk").values_list(*names)]

    return {"patients": table(Patient), "entries": table(Entry), "source_keys": table(SourceKey)}


def person_from(ods: str, number: str, key: str, text: str = "A finding") -> None:
    credential, _ = make_credential(partner(ods))
    message = feed(credential, clinical_bundle(number, key=key, text=text))
    assert message.status == "done", message.issues
    assert message.counts["created"] == 2, message.counts


def two_people() -> tuple[str, str]:
    """One person known under two NHS numbers: the practice and the hospital know each."""
    duplicate, kept = next_nhs_number(), next_nhs_number()
    person_from("Z81001", duplicate, "dupgp")
    person_from("ZAC01", duplicate, "dupac")
    person_from("ZAC01", kept, "keptac")
    return duplicate, kept


def merge(client: Client, kind: str, duplicate: str, kept: str) -> Any:
    response = client.post(
        f"/api/v1/workbench/identity/{kind}",
        {"from_nhs_number": duplicate, "to_nhs_number": kept, "reason": "Same person: checked"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def undo(client: Client, operation: str) -> Any:
    return client.post(f"/api/v1/workbench/identity/{operation}/undo")


def test_a_merge_moves_every_sources_entries_and_an_unmerge_restores_every_row(
    officer: Client,
) -> None:
    duplicate, kept = two_people()
    before = rows()
    merged_id = Patient.objects.get(nhs_number=duplicate).public_id
    done = merge(officer, "merge", duplicate, kept)
    assert done["entries"] == 4
    assert not Patient.objects.filter(nhs_number=duplicate).exists()
    survivor = Patient.objects.get(nhs_number=kept)
    assert Entry.objects.filter(patient=survivor).count() == 6
    assert SourceKey.objects.filter(patient=survivor).count() == 6
    assert rows() != before

    response = undo(officer, done["operation"])
    assert response.status_code == 200, response.content
    assert rows() == before
    # The merged person is the same subject again: the audit trail's events still name them.
    assert Patient.objects.get(nhs_number=duplicate).public_id == merged_id
    changes = AuditEvent.objects.filter(action="identity-change").order_by("id")
    assert [e.detail["change"] for e in changes] == ["merge", "unmerge"]
    assert changes[1].patient_id == merged_id
    assert undo(officer, done["operation"]).json()["error"]["code"] == "already_undone"


def test_a_link_moves_nothing_and_an_unlink_restores_every_row(officer: Client) -> None:
    duplicate, kept = two_people()
    before = rows()
    done = merge(officer, "link", duplicate, kept)
    assert done["entries"] == 0
    assert rows() == before
    assert undo(officer, done["operation"]).status_code == 200
    assert rows() == before
    assert IdentityOperation.objects.get(public_id=done["operation"]).undone_at is not None


def test_an_opt_out_on_either_number_wins_across_a_merge(officer: Client) -> None:
    duplicate, kept = two_people()
    done = merge(officer, "merge", duplicate, kept)
    # The person opts out under the number that was merged away: the survivor's record goes.
    make_optout(duplicate, partner("Z81001"))
    assert not Patient.objects.filter(nhs_number=kept).exists()
    assert IdentityOperation.objects.get(public_id=done["operation"]).snapshot == {}
    credential, _ = make_credential(partner("ZAC01"))
    blocked = feed(credential, clinical_bundle(kept, key="after", text="Later"))
    assert blocked.counts["blocked"] == 2
    assert not Patient.objects.filter(nhs_number=kept).exists()
    # Undoing the merge must not bring back a record for someone who opted out.
    refused = undo(officer, done["operation"])
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "opted_out"
    assert not Patient.objects.filter(nhs_number__in=[duplicate, kept]).exists()


def test_merging_into_an_opted_out_number_removes_both_records(officer: Client) -> None:
    duplicate, kept = two_people()
    make_optout(kept, partner("Z81001"))
    done = merge(officer, "merge", duplicate, kept)
    assert done["blocked"] is True
    assert not Patient.objects.filter(nhs_number__in=[duplicate, kept]).exists()
    credential, _ = make_credential(partner("ZAC01"))
    assert feed(credential, clinical_bundle(duplicate, key="aft", text="x")).counts["blocked"]


def test_a_link_joins_the_two_numbers_for_the_opt_out(officer: Client) -> None:
    duplicate, kept = two_people()
    done = merge(officer, "link", duplicate, kept)
    make_optout(kept, partner("Z81001"))
    assert not Patient.objects.filter(nhs_number__in=[duplicate, kept]).exists()
    undone = undo(officer, done["operation"])
    assert undone.json()["error"]["code"] == "opted_out"


def a40(*pairs: tuple[str, str, str]) -> bytes:
    segments = [
        "MSH|^~\\&|PAS|ZAC01|SR|B|20261120111500||ADT^A40^ADT_A39|m40|P|2.5",
        "EVN|A40|20261120111500",
    ]
    for i, (prior, survivor, suffix) in enumerate(pairs, start=1):
        segments += [
            f"PID|{i}||{survivor}^^^NHS^NH~M{suffix}1^^^ZAC01^MR||ELLISON^MARGARET||19410314|F",
            f"MRG|{prior}^^^NHS^NH~M{suffix}9^^^ZAC01^MR",
        ]
    return ("\r".join(segments) + "\r").encode()


def test_an_a40_with_several_pairs_records_one_merge_each_and_each_undoes_exactly(
    officer: Client,
) -> None:
    credential, _ = make_credential(partner("ZAC01"))
    old1, new1, old2, new2 = (next_nhs_number() for _ in range(4))
    for i, (old, visit) in enumerate(((old1, "V9"), (old2, "W9"))):
        message = feed_kind(
            credential, MessageKind.HL7V2,
            hl7_message(old, control_id=f"pre{i}", visit=visit).encode(),
        )  # fmt: skip
        assert message.status == "done", message.issues
    person_from("Z81001", old1, "gpold1")  # another source's record of the first: it stays
    before = rows()
    merged = feed_kind(credential, MessageKind.HL7V2, a40((old1, new1, "V"), (old2, new2, "W")))
    assert merged.counts["merged"] == 2
    operations = IdentityOperation.objects.filter(feed_message_id=merged.public_id)
    assert sorted((o.from_nhs_number, o.to_nhs_number) for o in operations) == sorted(
        [(old1, new1), (old2, new2)]
    )
    assert {o.source_org.ods_code for o in operations if o.source_org} == {"ZAC01"}
    gp_entries = Entry.objects.filter(patient__nhs_number=old1, source_org__ods_code="Z81001")
    assert gp_entries.count() == 2  # the practice's record of the person did not move
    # The A40 ended the sender's records of the merged-away people (kept in each operation)
    # and filed the survivors' Patients; undoing each merge gives back what it moved and ended.
    after_merge = rows()
    retired = {row["id"] for o in operations for row in o.snapshot["retired"]}
    assert len(retired) == 2
    for operation in operations.order_by("-id"):
        assert undo(officer, str(operation.public_id)).status_code == 200
    restored = rows()
    came_back = {r[0] for r in restored["entries"]} - {r[0] for r in after_merge["entries"]}
    assert came_back == retired
    for row in before["entries"]:
        assert row in restored["entries"]
    for row in before["source_keys"]:
        assert row in restored["source_keys"]
    for row in before["patients"]:
        assert row in restored["patients"]


def test_a_source_correcting_a_persons_nhs_number_moves_its_entries(officer: Client) -> None:
    wrong, right = next_nhs_number(), next_nhs_number()
    person_from("ZAC01", wrong, "corr", text="Hospital finding")
    person_from("Z81001", wrong, "gpcorr", text="Practice finding")
    before = rows()
    credential, _ = make_credential(partner("ZAC01"))
    corrected = clinical_bundle(right, key="corr", text="Hospital finding")
    corrected["entry"][0]["resource"]["meta"]["lastUpdated"] = "2099-01-01T00:00:00+00:00"
    message = feed(credential, corrected)
    assert message.status == "done", message.issues
    hospital = Entry.objects.filter(source_org__ods_code="ZAC01", source_id__startswith="corr")
    assert {e.patient.nhs_number for e in hospital} == {right}
    practice = Entry.objects.filter(source_org__ods_code="Z81001", source_id__startswith="gpcorr")
    assert {e.patient.nhs_number for e in practice} == {wrong}  # it speaks for its own only
    (operation,) = IdentityOperation.objects.filter(feed_message_id=message.public_id)
    assert (operation.from_nhs_number, operation.to_nhs_number) == (wrong, right)
    event = AuditEvent.objects.get(detail__decision="nhs-number-corrected")
    assert event.detail["operation"] == str(operation.public_id)
    # Undone, the moved entries and keys go back (the corrected Patient keeps its newer version).
    assert undo(officer, str(operation.public_id)).status_code == 200
    hospital_before = {r[0] for r in before["entries"]}
    for entry in Entry.objects.filter(pk__in=hospital_before):
        assert entry.patient.nhs_number == wrong


def test_only_the_programmes_officers_merge_or_undo() -> None:
    duplicate, kept = two_people()
    hospital_officer = client_for(make_staff("ZAC01", "acute", "data-quality-officer"))
    response = hospital_officer.post(
        "/api/v1/workbench/identity/merge",
        {"from_nhs_number": duplicate, "to_nhs_number": kept, "reason": "Same person: checked"},
        content_type="application/json",
    )
    assert response.status_code == 403
    clinician = client_for(make_staff("ZAC01", "acute", "clinical-practitioner"))
    assert clinician.get("/api/v1/workbench/identity").status_code == 403
    assert not IdentityOperation.objects.exists()


def test_the_identity_page_merges_and_undoes(officer: Client) -> None:
    duplicate, kept = two_people()
    before = rows()
    page = officer.post(
        "/workbench/identity",
        {"action": "merge", "from_nhs_number": duplicate, "to_nhs_number": kept,
         "reason": "Same person: checked with the practice"},
    )  # fmt: skip
    assert page.status_code == 302
    listing = officer.get("/workbench/identity").content.decode()
    assert duplicate in listing
    assert "Undo" in listing
    operation = IdentityOperation.objects.get()
    assert officer.post(
        "/workbench/identity", {"action": "undo", "operation": str(operation.public_id)}
    ).status_code == 302  # fmt: skip
    assert rows() == before
    short = officer.post(
        "/workbench/identity",
        {"action": "merge", "from_nhs_number": duplicate, "to_nhs_number": kept, "reason": "x"},
    )
    assert short.status_code == 400


def test_users_of_other_roles_have_no_identity_page() -> None:
    user: User = make_staff(PROGRAMME_ODS, "other", "privacy-officer")
    assert client_for(user).get("/workbench/identity").status_code == 403
