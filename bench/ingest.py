"""Ingest benchmark: entries per second from HTTP POST to committed rows.

Run: .venv/bin/python -m sharedrecord.localservices exec -- .venv/bin/python bench/ingest.py

Steps:
1. Make a private database (sharedrecord_bench), migrate it, start a real web
   server (gunicorn) and a real Celery worker on it, on a private queue.
2. Post N bundles of 100 mixed entries each through the feed API (one after
   another, or over BENCH_SENDERS connections at once); wait until
   every receipt is done; entries/s = entries / (first POST to last commit).
3. Re-send the same resources under new Bundle ids: the idempotent path.
4. Denominators in the same run, on the same cores: fhir.resources
   validate-only rate over the same entries (one process per core), and the
   raw PostgreSQL COPY rate of the same rows.
5. CPU share of each stage, from processing sample messages in-process under
   a CPU-time profiler: parse/validate, match, upsert, other.
Prints figures only; asserts nothing.
"""

from __future__ import annotations

import cProfile
import dataclasses
import json
import multiprocessing
import os
import pstats
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingestion.demo import BundleBuilder

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
BUNDLES = int(os.environ.get("BENCH_BUNDLES", "60"))
# Connections posting at once (1: one after another, as this benchmark always has).
SENDERS = int(os.environ.get("BENCH_SENDERS", "1"))
CORES = os.cpu_count() or 2


def mixed_builder(serial: int, *, ods: str, key: str, tag: str, number_from: int) -> BundleBuilder:
    """A BundleBuilder holding a Patient and 99 entries of mixed types (results, problems,
    encounters, medicines), like a GP summary or an acute feed."""
    from ingestion.demo import PEOPLE, BundleBuilder, synthetic_nhs_number

    person = dataclasses.replace(
        PEOPLE[serial % len(PEOPLE)],
        key=key,
        nhs_number_sent=synthetic_nhs_number(number_from + serial * 7),
    )
    builder = BundleBuilder(person, ods, tag).patient()
    for n in range(99):
        kind = n % 6
        if kind in (0, 1, 2):
            builder.add("Observation", {
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
                "effectiveDateTime": f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}T09:00:00Z",
                "valueQuantity": {"value": 4 + n % 5, "unit": "mmol/L"},
            })  # fmt: skip
        elif kind == 3:
            builder.add("Condition", {
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
                "onsetDateTime": "2019-05-01",
            })  # fmt: skip
        elif kind == 4:
            builder.add("Encounter", {
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "period": {"start": "2025-03-01T09:00:00Z", "end": "2025-03-01T09:30:00Z"},
            })  # fmt: skip
        else:
            builder.add("MedicationStatement", {
                "status": "active",
                "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": "325242002"}]},
                "effectivePeriod": {"start": "2024-01-01"},
            })  # fmt: skip
    return builder


def mixed_bundle(serial: int, run: str) -> dict[str, Any]:
    """A Patient and 99 entries of mixed types, as one Bundle for the feed API."""
    builder = mixed_builder(
        serial, ods="ZAC01", key=f"b{serial}", tag=f"bench{serial}", number_from=10_000
    )
    bundle = builder.bundle()
    bundle["id"] = f"{run}-{serial}"
    return bundle


def _validate_only(payloads: list[bytes]) -> int:
    from fhir.resources.R4B import get_fhir_model_class

    count = 0
    for payload in payloads:
        for entry in json.loads(payload)["entry"]:
            resource = entry["resource"]
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            count += 1
    return count


def validate_only_rate(payloads: list[bytes]) -> float:
    chunks = [payloads[i::CORES] for i in range(CORES)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(CORES) as pool:
        total = sum(pool.map(_validate_only, chunks))
    return total / (time.perf_counter() - started)


def copy_rate(database: str) -> tuple[float, int]:
    """COPY the committed entry rows into a scratch table with the same indexes."""
    import psycopg

    columns = (
        "public_id, patient_id, resource_type, section, source_org_id, source_system, source_id, "
        "version_id, source_updated_at, effective_at, status, code_system, code, code_display, "
        "sensitivity, codes, resource, content_hash, received_at, updated_at, feed_message_id"
    )
    with psycopg.connect(database) as conn:
        rows = conn.execute(f"SELECT {columns} FROM sharedrecord_entry").fetchall()
        conn.execute("CREATE TEMP TABLE bench_copy (LIKE sharedrecord_entry INCLUDING ALL)")
        started = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY bench_copy ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row([json.dumps(v) if isinstance(v, dict) else v for v in row])
        conn.commit()
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed, len(rows)


def post(base: str, token: str, bundle: dict[str, Any]) -> str:
    request = urllib.request.Request(
        f"{base}/api/v1/feeds/fhir",
        data=json.dumps(bundle).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 202
        return str(json.loads(response.read())["id"])


def wait_done(ids: list[str], timeout: float = 600) -> None:
    from ingestion.models import FeedMessage

    deadline = time.monotonic() + timeout
    while FeedMessage.objects.filter(
        public_id__in=ids, status__in=["received", "processing"]
    ).exists():
        if time.monotonic() > deadline:
            raise SystemExit("messages did not finish in time")
        time.sleep(0.05)


def run_batch(
    base: str, token: str, bundles: list[dict[str, Any]]
) -> tuple[float, list[float], dict[str, int]]:
    from ingestion.models import FeedMessage

    started = time.perf_counter()
    with ThreadPoolExecutor(SENDERS) as pool:
        ids = list(pool.map(lambda bundle: post(base, token, bundle), bundles))
    wait_done(ids)
    elapsed = time.perf_counter() - started
    messages = FeedMessage.objects.filter(public_id__in=ids)
    latencies = sorted(
        (m.finished_at - m.received_at).total_seconds()
        for m in messages.only("finished_at", "received_at")
        if m.finished_at is not None
    )
    counts: dict[str, int] = {}
    for m in messages.values_list("counts", flat=True):
        for key, value in m.items():
            counts[key] = counts.get(key, 0) + value
    return elapsed, latencies, counts


def stage_shares(token_org: Any, credential: Any, payloads: list[bytes]) -> dict[str, float]:
    """Process sample messages in this process under a CPU-time profiler."""
    from ingestion.models import MessageKind
    from ingestion.processing import feed_message_process
    from ingestion.receiving import feed_message_receive

    profiler = cProfile.Profile(time.process_time)
    for n, payload in enumerate(payloads):
        bundle = json.loads(payload)
        bundle["id"] = f"profile-{uuid.uuid4()}"
        for entry in bundle["entry"]:
            entry["resource"]["id"] = f"{entry['resource']['id']}-p{n}"
        data = json.dumps(bundle).encode()
        received = feed_message_receive(
            credential=credential, kind=MessageKind.FHIR_JSON, payload=data,
            idempotency_key=bundle["id"], entry_count=len(bundle["entry"]),
        )  # fmt: skip
        profiler.runcall(feed_message_process, message_id=received.message.pk)
    stats = pstats.Stats(profiler)
    raw = stats.stats  # type: ignore[attr-defined]

    def cumulative(name: str) -> float:
        return float(sum(v[3] for k, v in raw.items() if k[2] == name))

    total = cumulative("feed_message_process")
    parse = cumulative("parse_bundle")
    match = cumulative("_group") + cumulative("patient_match") + cumulative("patient_create")
    upsert = cumulative("entries_upsert") + cumulative("patient_demographics_refresh")
    return {
        "parse/validate": parse / total,
        "match": match / total,
        "upsert": upsert / total,
        "other (locks, receipt, audit)": max(0.0, 1 - (parse + match + upsert) / total),
    }


def main() -> None:
    from sharedrecord.localservices import celery_workers, ensure_database, with_database

    database = with_database(
        os.environ["DATABASE_URL"], os.environ.get("BENCH_DATABASE", "sharedrecord_bench")
    )
    ensure_database(database)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": database, "CELERY_QUEUE": queue, "DEBUG": "false",
           "SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false"}  # fmt: skip
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from ingestion.credentials import feed_credential_issue
    from sharedrecord.models import Entry, Organisation

    Entry.objects.all().delete()
    organisation, _ = Organisation.objects.get_or_create(
        ods_code="ZAC01",
        defaults={"name": "Bench acute", "kind": "acute", "dsa_start": "2025-01-01"},
    )
    credential, token = feed_credential_issue(organisation=organisation, system="bench")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    python = sys.executable
    web = subprocess.Popen(
        [python, "-m", "gunicorn", "sharedrecord.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--threads", "4", "--worker-class", "gthread", "--log-level", "warning"],
        env=env, cwd=BASE_DIR,
    )  # fmt: skip
    # The deployed layout (sharedrecord.localservices.celery_workers): a pool per queue.
    workers = [
        subprocess.Popen(command, env=env, cwd=BASE_DIR)
        for command in celery_workers(python, queue=queue, loglevel="WARNING")
    ]
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        run = uuid.uuid4().hex[:8]
        bundles = [mixed_bundle(i, run) for i in range(BUNDLES)]
        entries = sum(len(b["entry"]) for b in bundles)
        post(base, token, mixed_bundle(9999, run))  # warm up web and worker
        elapsed, latencies, counts = run_batch(base, token, bundles)
        resend = [{**b, "id": f"{b['id']}-again"} for b in bundles]
        resend_elapsed, _, resend_counts = run_batch(base, token, resend)

        payloads = [json.dumps(b).encode() for b in bundles]
        validate_rate = validate_only_rate(payloads)
        copy_per_s, copied = copy_rate(database)
        shares = stage_shares(organisation, credential, payloads[:5])
    finally:
        for process in (web, *workers):
            process.terminate()
        for process in (web, *workers):
            process.wait()

    e2e = entries / elapsed
    p50 = statistics.median(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"machine: {CORES} cores; web: gunicorn 2 processes x 4 threads; Celery: a pool of "
          f"{CORES} processes per queue (feeds; large messages)")  # fmt: skip
    print(f"bundles: {BUNDLES} x 100 mixed entries = {entries} entries, "
          f"posted over {SENDERS} connection(s)")  # fmt: skip
    print(f"end to end (POST -> committed rows): {e2e:,.0f} entries/s "
          f"({elapsed:.1f} s; created {counts.get('created', 0)})")  # fmt: skip
    print(f"accept-to-queryable latency per message: p50 {p50:.2f} s, p95 {p95:.2f} s")
    print(f"idempotent re-send (no new rows): {entries / resend_elapsed:,.0f} entries/s "
          f"(unchanged {resend_counts.get('unchanged', 0)}, created {resend_counts.get('created', 0)})")  # fmt: skip
    print(f"fhir.resources validate-only on {CORES} cores: {validate_rate:,.0f} entries/s")
    print(f"PostgreSQL COPY of the same {copied} rows: {copy_per_s:,.0f} rows/s")
    print(f"ratio end-to-end / validate-only: {e2e / validate_rate:.2f}")
    print(f"ratio end-to-end / COPY: {e2e / copy_per_s:.3f}")
    print("CPU share of processing by stage (in-process profile of 5 messages):")
    for stage, share in shares.items():
        print(f"  {stage:<30} {share:6.1%}")


if __name__ == "__main__":
    main()
