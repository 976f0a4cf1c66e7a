"""feed_import: FHIR NDJSON and Bundle files through the feeds' own validation, matching and gate."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditAction, AuditEvent
from ingestion.management.commands.feed_import import progress_wanted
from ingestion.models import FeedMessage, ImportCheckpoint, MatchQueueItem
from sharedrecord.models import Entry, Patient
from tests.factories import (
    EXTERNAL,
    NHS,
    gp_bundle,
    make_credential,
    make_optout,
    make_organisation,
    next_nhs_number,
)

pytestmark = pytest.mark.django_db

BULK = EXTERNAL / "synthea-bulk-ndjson"
# Lines of each vendored file; Device is not held in the record.
LINES = {"Patient": 7, "AllergyIntolerance": 8, "Immunization": 94, "Condition": 179, "Device": 7}


def bulk_copy(folder: Path, numbers: list[str] | None = None) -> list[str]:
    """The vendored Synthea bulk files in `folder`; with `numbers`, each Patient gets one.

    As published, Synthea's people carry US identifiers only; a UK source sends
    an NHS number, which the test adds to the Patient line (as for the Synthea
    Bundles in test_e2e_feeds.py). Returns the NHS numbers in Patient line order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name in LINES:
        shutil.copy(BULK / f"{name}.000.ndjson", folder)
    if numbers is None:
        return []
    patients = (folder / "Patient.000.ndjson").read_text().splitlines()
    lines = []
    for line, number in zip(patients, numbers, strict=True):
        resource = json.loads(line)
        resource.setdefault("identifier", []).insert(0, {"system": NHS, "value": number})
        lines.append(json.dumps(resource))
    (folder / "Patient.000.ndjson").write_text("\n".join(lines) + "\n")
    return numbers


def run_import(organisation_ods: str, *paths: Path | str, **options: Any) -> str:
    out = io.StringIO()
    call_command(
        "feed_import",
        "--org",
        organisation_ods,
        "--system",
        "EPR",
        *[str(p) for p in paths],
        stdout=out,
        stderr=io.StringIO(),
        **options,
    )
    return out.getvalue()


@pytest.fixture
def acute(db: None) -> Any:
    organisation = make_organisation(ods_code="ZAC91", name="Bulk General", kind="acute")
    make_credential(organisation)
    return organisation


def test_synthea_bulk_as_published_is_parked_and_no_person_is_guessed(acute: Any) -> None:
    report = run_import("ZAC91", BULK)
    assert Patient.objects.count() == 0
    reasons = dict(
        (r, MatchQueueItem.objects.filter(reason=r).count())
        for r in ("no-nhs-number", "unknown-patient")
    )
    # Each Patient lacks an NHS number; what refers to them refers to no known person.
    assert reasons == {
        "no-nhs-number": 7,
        "unknown-patient": 8 + 94 + 179,
    }
    assert "parked 288" in report.replace(",", "")
    assert "unsupported-type: Device.000.ndjson lines 1-7" in report


def test_it_stores_every_line_once_patients_first_whatever_the_order_given(
    acute: Any, tmp_path: Path
) -> None:
    numbers = bulk_copy(tmp_path, [next_nhs_number() for _ in range(7)])
    files = sorted(tmp_path.iterdir(), key=lambda p: p.name != "Condition.000.ndjson")
    assert files[-1].name != "Patient.000.ndjson" or files[0].name == "Condition.000.ndjson"
    report = run_import("ZAC91", *files, batch_size=25)

    stored = Entry.objects.filter(source_org=acute)
    assert stored.count() == 7 + 8 + 94 + 179
    assert set(stored.values_list("patient__nhs_number", flat=True)) == set(numbers)
    assert not MatchQueueItem.objects.exists()
    assert "Stored 288 (created 288" in report
    assert "rejected 7" in report

    # Again: each file is already imported; nothing new.
    again = run_import("ZAC91", *files)
    assert again.count("already imported") == len(LINES)
    assert Entry.objects.filter(source_org=acute).count() == 288
    # --restart reads every line again: the upsert stores nothing twice.
    restarted = run_import("ZAC91", *files, restart=True)
    assert "Stored 288 (created 0, updated 0, unchanged 288)" in restarted
    assert Entry.objects.filter(source_org=acute).count() == 288


def test_it_audits_each_batch_with_its_file_and_counts_not_each_entry(
    acute: Any, tmp_path: Path
) -> None:
    bulk_copy(tmp_path, [next_nhs_number() for _ in range(7)])
    before = AuditEvent.objects.count()
    run_import("ZAC91", tmp_path / "Patient.000.ndjson", tmp_path / "Condition.000.ndjson",
               batch_size=50)  # fmt: skip
    batches = AuditEvent.objects.filter(action=AuditAction.FEED_PROCESSED, detail__has_key="import")
    # Patient: 1 batch of 7; Condition: 179 lines in batches of 50.
    assert batches.count() == 1 + 4
    condition = batches.filter(detail__file="Condition.000.ndjson").order_by("id")
    assert [e.detail["lines"] for e in condition] == [[1, 50], [51, 100], [101, 150], [151, 179]]
    assert sum(e.detail["counts"]["created"] for e in condition) == 179
    # Beside the batches, only the feeds' own match decisions (one per person per batch).
    decisions = AuditEvent.objects.filter(action=AuditAction.MATCH_DECISION).count()
    assert AuditEvent.objects.count() - before == batches.count() + decisions
    assert decisions <= 7 * batches.count()


def test_rejected_lines_are_reported_by_reason_with_file_and_line_never_values(
    acute: Any, tmp_path: Path
) -> None:
    number = next_nhs_number()
    bundle = gp_bundle(number, key="bulk-rejects")
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    condition = {
        "resourceType": "Condition", "id": "c1",
        "subject": {"reference": f"Patient/{patient['id']}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
    }  # fmt: skip
    lines = [
        json.dumps(patient),                                        # 1 stored
        json.dumps(condition),                                      # 2 stored
        '{"resourceType": "Condition", "id": "SECRET-VALUE-1", ',   # 3 broken JSON
        "",                                                         # 4 blank: passed over
        json.dumps(condition | {"id": "c2", "clinicalStatus": "SECRET-VALUE-2"}),  # 5 invalid
        json.dumps({"resourceType": "Claim", "id": "x1"}),          # 6 unsupported
        json.dumps(condition | {"id": "c3", "subject": {"reference": "Patient/nobody"}}),  # 7 parked
        '["not", "a", "resource"]',                                 # 8 not a resource
    ]  # fmt: skip
    path = tmp_path / "mixed.ndjson"
    path.write_text("\n".join(lines) + "\n")
    report = run_import("ZAC91", path)

    assert "invalid-json: mixed.ndjson line 3" in report
    assert "invalid-resource: mixed.ndjson line 5" in report
    assert "unsupported-type: mixed.ndjson line 6" in report
    assert "missing-resource: mixed.ndjson line 8" in report
    assert "unknown-patient: 1" in report
    assert "SECRET-VALUE" not in report
    assert Entry.objects.filter(patient__nhs_number=number, source_org=acute).count() == 2
    parked = MatchQueueItem.objects.get()
    assert parked.entry_index == 7  # the line number, for the reviewer
    checkpoint = ImportCheckpoint.objects.get()
    assert checkpoint.lines_done == 8
    assert checkpoint.finished_at is not None
    message = FeedMessage.objects.get(idempotency_key__startswith="import:")
    assert "SECRET-VALUE" not in json.dumps(message.issues)
    assert {i["line"] for i in message.issues if i["severity"] == "error"} == {3, 5, 6, 8}


def test_an_opted_out_person_gets_no_record_from_an_import(acute: Any, tmp_path: Path) -> None:
    practice = make_organisation(ods_code="Z81091", kind="gp-practice")
    numbers = bulk_copy(tmp_path, [next_nhs_number() for _ in range(7)])
    opted_out = numbers[2]
    make_optout(opted_out, practice)
    report = run_import("ZAC91", tmp_path)

    assert not Patient.objects.filter(nhs_number=opted_out).exists()
    assert not Entry.objects.filter(patient__nhs_number=opted_out).exists()
    assert Patient.objects.filter(nhs_number__in=numbers).count() == 6
    assert "blocked by opt-out 0" not in report.splitlines()[-2]
    checkpoint = ImportCheckpoint.objects.get(file_name="Patient.000.ndjson")
    assert checkpoint.counts["blocked"] == 1


def test_it_refuses_a_system_without_a_live_credential_and_an_inactive_agreement(
    acute: Any, tmp_path: Path
) -> None:
    bulk_copy(tmp_path)
    with pytest.raises(CommandError, match="no live feed credential"):
        call_command("feed_import", "--org", "ZAC91", "--system", "PAS", str(tmp_path))
    acute.dsa_end = "2025-06-01"
    acute.save()
    with pytest.raises(CommandError, match="data sharing agreement"):
        run_import("ZAC91", tmp_path)
    assert not Entry.objects.exists()
    refused = AuditEvent.objects.get(action=AuditAction.FEED_REJECTED)
    assert refused.detail["code"] == "agreement-inactive"
    assert refused.detail["location"] == "Patient.000.ndjson line 1"


def test_the_progress_display_is_off_for_ci_pipes_and_no_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    assert progress_wanted(no_progress=False, stream=Terminal())
    assert not progress_wanted(no_progress=True, stream=Terminal())
    assert not progress_wanted(no_progress=False, stream=io.StringIO())  # a pipe or a file
    monkeypatch.setenv("CI", "true")
    assert not progress_wanted(no_progress=False, stream=Terminal())


def test_a_bundle_file_goes_through_the_same_pipeline(acute: Any, tmp_path: Path) -> None:
    number = next_nhs_number()
    (tmp_path / "summary.json").write_text(json.dumps(gp_bundle(number, key="bulk-bundle")))
    (tmp_path / "broken.json").write_text('{"resourceType": "Bundle", ')
    report = run_import("ZAC91", tmp_path)
    assert Entry.objects.filter(patient__nhs_number=number).exists()
    assert "invalid-json: broken.json the whole file" in report


def test_two_runs_on_one_file_cannot_both_apply_a_batch(acute: Any, tmp_path: Path) -> None:
    from ingestion.bulk import (
        ImportConflict,
        import_batch_commit,
        import_checkpoint_open,
        import_file_survey,
    )
    from ingestion.models import FeedCredential

    numbers = bulk_copy(tmp_path, [next_nhs_number() for _ in range(7)])
    credential = FeedCredential.objects.get(organisation=acute)
    file = import_file_survey(tmp_path / "Patient.000.ndjson")
    lines = list(enumerate((tmp_path / "Patient.000.ndjson").read_bytes().splitlines(), start=1))
    first = import_checkpoint_open(credential=credential, file=file)
    second = import_checkpoint_open(credential=credential, file=file)  # another run's view
    import_batch_commit(
        checkpoint=first, credential=credential, file=file, lines=lines, last_line=7
    )
    with pytest.raises(ImportConflict):
        import_batch_commit(
            checkpoint=second, credential=credential, file=file, lines=lines, last_line=7
        )
    assert Patient.objects.filter(nhs_number__in=numbers).count() == 7
    assert Entry.objects.filter(source_org=acute).count() == 7
