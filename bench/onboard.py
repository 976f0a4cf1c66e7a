"""Onboarding benchmark: feed_import's entries per second against validate-only, same run.

Run: flock /tmp/bench.lock .venv/bin/python -m sharedrecord.localservices exec -- \
         .venv/bin/python bench/onboard.py

Steps:
1. Make a private database (sharedrecord_onboard_bench) and migrate it.
2. Write a synthetic FHIR Bulk Data export: BENCH_PEOPLE people, each with a
   Patient and 99 mixed entries (the shapes bench/ingest.py sends: Observations,
   Conditions, Encounters, MedicationStatements), one NDJSON file per type,
   each file in patient order, references as `Patient/<id>`.
3. Validate-only, in this run, on the same resources: read each line and
   `model_validate` it with fhir.resources (R4B), in one process (feed_import
   is one process) and in one process per core.
4. feed_import of the whole export (no progress bar), timed from the first
   line read to the last batch committed: entries/s, the ratios, and the hours
   100 million entries would take at that rate. Also per CPU second of the
   Python process, against validate-only's, which a busy shared machine moves less.
5. The same with `--jobs` one process per core, on an export of its own,
   against validate-only on as many processes.
6. CPU share by stage: the same import in-process under cProfile, on a
   smaller export of its own.
Prints figures only; asserts nothing.
"""

from __future__ import annotations

import cProfile
import io
import json
import multiprocessing
import os
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
PEOPLE = int(os.environ.get("BENCH_PEOPLE", "200"))
PROFILE_PEOPLE = int(os.environ.get("BENCH_PROFILE_PEOPLE", "20"))
BATCH = int(os.environ.get("BENCH_BATCH", "500"))
CORES = os.cpu_count() or 2
ODS = "ZOB01"


def person_resources(serial: int, run: str) -> list[dict[str, Any]]:
    """A Patient and 99 entries of mixed types, each naming its Patient as `Patient/<id>`."""
    from ingest import mixed_builder  # bench/ingest.py: the same entries its Bundles carry

    builder = mixed_builder(serial, ods=ODS, key=f"o{run}{serial}", tag=run, number_from=20_000)
    resources = [entry["resource"] for entry in builder.entries]
    patient_ref = {"reference": f"Patient/{resources[0]['id']}"}
    for resource in resources[1:]:
        resource["subject"] = patient_ref
    return resources


def write_export(folder: Path, people: int, run: str) -> int:
    """One NDJSON file per type, each in patient order; returns the number of lines."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, io.TextIOWrapper] = {}
    lines = 0
    try:
        for serial in range(people):
            for resource in person_resources(serial, run):
                kind = resource["resourceType"]
                if kind not in files:
                    files[kind] = (folder / f"{kind}.000.ndjson").open("w")
                files[kind].write(json.dumps(resource, separators=(",", ":")) + "\n")
                lines += 1
    finally:
        for stream in files.values():
            stream.close()
    return lines


def _validate_files(paths: list[str]) -> int:
    from fhir.resources.R4B import get_fhir_model_class

    count = 0
    for path in paths:
        with open(path, "rb") as stream:
            for line in stream:
                resource = json.loads(line)
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)
                count += 1
    return count


def _validate_lines(lines: list[bytes]) -> int:
    from fhir.resources.R4B import get_fhir_model_class

    for line in lines:
        resource = json.loads(line)
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return len(lines)


def validate_only_rate(folder: Path, processes: int) -> float:
    """Lines read and validated per second, over `processes` processes (spawned, warmed)."""
    lines = [line for path in sorted(folder.glob("*.ndjson")) for line in path.open("rb")]
    chunks = [lines[i::processes] for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_validate_lines, [chunk[:50] for chunk in chunks])  # import and warm up
        started = time.perf_counter()
        total = sum(pool.map(_validate_lines, chunks))
        return total / (time.perf_counter() - started)


def validate_cpu_rate(folder: Path) -> float:
    """Lines read and validated per CPU second of this process: less moved by a busy machine."""
    lines = [line for path in sorted(folder.glob("*.ndjson")) for line in path.open("rb")]
    _validate_lines(lines[:50])
    started = time.process_time()
    _validate_lines(lines)
    return len(lines) / (time.process_time() - started)


STAGES = {
    "read and screen lines (json, depth, characters)": ("bulk.py", "_screened"),
    "validate: fhir.resources model_validate": ("main.py", "model_validate"),
    "validate: model_dump back to JSON": ("main.py", "model_dump"),
    "parse: our rules, envelope, typed columns": ("bundle.py", "parse_bundle"),
    "match, gate, audit (bundle_apply minus upsert)": ("applying.py", "bundle_apply"),
    "upsert (entries_upsert)": ("entries.py", "entries_upsert"),
    "batch commit, checkpoint, receipt": ("bulk.py", "import_batch_commit"),
}


def stage_shares(profile: cProfile.Profile) -> dict[str, float]:
    """Each stage's share of the import's CPU time, nested stages taken out of their parents."""
    stats = pstats.Stats(profile)
    raw = stats.stats  # type: ignore[attr-defined]

    def cumulative(file_suffix: str, name: str) -> float:
        return float(
            sum(
                value[3]
                for (filename, _, function), value in raw.items()
                if function == name and filename.endswith(file_suffix)
            )
        )

    total = sum(value[2] for value in raw.values())
    c = {stage: cumulative(*where) for stage, where in STAGES.items()}
    validate = c["validate: fhir.resources model_validate"]
    dump = c["validate: model_dump back to JSON"]
    upsert = c["upsert (entries_upsert)"]
    parse = c["parse: our rules, envelope, typed columns"]
    apply = c["match, gate, audit (bundle_apply minus upsert)"]
    screen = c["read and screen lines (json, depth, characters)"]
    commit = c["batch commit, checkpoint, receipt"]
    shares = {
        "read and screen lines (json, depth, characters)": screen,
        "validate: fhir.resources model_validate": validate,
        "validate: model_dump back to JSON": dump,
        "parse: our rules, envelope, typed columns": parse - validate - dump,
        "match, gate, audit (bundle_apply minus upsert)": apply - upsert,
        "upsert (entries_upsert)": upsert,
        "batch commit, checkpoint, receipt": commit - screen - parse - apply,
    }
    shares["other (file survey, Django, report)"] = total - sum(shares.values())
    return {stage: seconds / total for stage, seconds in shares.items()}


def main() -> None:
    from sharedrecord.localservices import ensure_database, with_database

    database = with_database(os.environ["DATABASE_URL"], "sharedrecord_onboard_bench")
    ensure_database(database)
    env = {"DATABASE_URL": database, "DEBUG": "false", "LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from ingestion.credentials import feed_credential_issue
    from sharedrecord.models import Entry, Organisation

    Entry.objects.filter(source_org__ods_code=ODS).delete()
    organisation, _ = Organisation.objects.get_or_create(
        ods_code=ODS,
        defaults={"name": "Bench onboarding", "kind": "acute", "dsa_start": "2025-01-01"},
    )
    feed_credential_issue(organisation=organisation, system="bench")
    run = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        lines = write_export(export, PEOPLE, run)
        validate_one = validate_only_rate(export, 1)
        validate_all = validate_only_rate(export, CORES)

        validate_cpu = validate_cpu_rate(export)
        started, cpu_started = time.perf_counter(), time.process_time()
        call_command(
            "feed_import", "--org", ODS, "--system", "bench", str(export),
            "--no-progress", "--batch-size", str(BATCH), stdout=io.StringIO(),
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        import_cpu = time.process_time() - cpu_started
        created = Entry.objects.filter(source_org=organisation).count()

        # The same again with one process per core, on an export of its own.
        export_jobs = Path(tmp) / "export-jobs"
        write_export(export_jobs, PEOPLE, f"{run}j")
        started = time.perf_counter()
        call_command(
            "feed_import", "--org", ODS, "--system", "bench", str(export_jobs), "--no-progress",
            "--batch-size", str(BATCH), "--jobs", str(CORES), stdout=io.StringIO(),
        )  # fmt: skip
        elapsed_jobs = time.perf_counter() - started
        created_jobs = Entry.objects.filter(source_org=organisation).count() - created

        small = Path(tmp) / "profiled"
        write_export(small, PROFILE_PEOPLE, f"{run}p")
        profile = cProfile.Profile()
        profile.enable()
        call_command(
            "feed_import", "--org", ODS, "--system", "bench", str(small),
            "--no-progress", "--batch-size", str(BATCH), stdout=io.StringIO(),
        )  # fmt: skip
        profile.disable()
        shares = stage_shares(profile)

    rate = lines / elapsed
    print(f"machine: {CORES} cores; feed_import: 1 process, batches of {BATCH} lines")
    print(f"export: {PEOPLE} people x 100 entries = {lines} NDJSON lines in 5 files")
    print(f"feed_import (first line read -> last batch committed): {rate:,.0f} entries/s "
          f"({elapsed:.1f} s; entries stored {created})")  # fmt: skip
    print(f"fhir.resources validate-only, 1 process: {validate_one:,.0f} entries/s")
    print(f"fhir.resources validate-only, {CORES} processes: {validate_all:,.0f} entries/s")
    print(f"ratio feed_import / validate-only (1 process, like feed_import): "
          f"{rate / validate_one:.2f} (target 0.6)")  # fmt: skip
    print(f"ratio feed_import / validate-only ({CORES} processes): {rate / validate_all:.2f}")
    print(f"per CPU second of the Python process (PostgreSQL's CPU not counted): feed_import "
          f"{lines / import_cpu:,.0f} entries, validate-only {validate_cpu:,.0f}, ratio "
          f"{lines / import_cpu / validate_cpu:.2f}")  # fmt: skip
    rate_jobs = lines / elapsed_jobs
    print(f"feed_import --jobs {CORES}: {rate_jobs:,.0f} entries/s ({elapsed_jobs:.1f} s; "
          f"entries stored {created_jobs}); ratio to validate-only on {CORES} processes: "
          f"{rate_jobs / validate_all:.2f}")  # fmt: skip
    print(f"projected for 100 million entries: {1e8 / rate / 3600:,.1f} hours in 1 process, "
          f"{1e8 / rate_jobs / 3600:,.1f} hours with --jobs {CORES}")  # fmt: skip
    print(f"CPU share of feed_import by stage (cProfile, {PROFILE_PEOPLE * 100} entries):")
    for stage, share in shares.items():
        print(f"  {stage:<52} {share:6.1%}")


if __name__ == "__main__":
    main()
