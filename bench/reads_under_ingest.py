"""Reads while an import runs at full speed: record summary and $everything, idle and busy.

Run: flock /tmp/bench.lock .venv/bin/python -m sharedrecord.localservices exec -- \
         .venv/bin/python bench/reads_under_ingest.py

Steps:
1. Make a private database (sharedrecord_bench_reads) and migrate it; load a
   person with 5,000 entries (bench/view.py's long record) registered with a
   practice, a GP there with a recorded basis, and a partner system's token.
2. Write a Bulk Data export (bench/onboard.py's: BENCH_PEOPLE people x 100
   entries) for another organisation.
3. Idle: READS reads of the person's summary page and of the whole record
   through $everything (1,000 entries a page), in-process (Django's test
   client: view, policy, audit write, template; no network).
4. Busy: the same reads while `manage.py feed_import --jobs <cores>` imports
   the export in its own processes, started just before.
Prints p50 and p95 of each, idle and busy, and the import's rate while the
reads ran. Prints figures only; asserts nothing.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from percentiles import p50_p95  # noqa: E402 (bench/, beside this file)
from records import bench_database, bench_gp, bench_practice, long_record_person  # noqa: E402

PEOPLE = int(os.environ.get("BENCH_PEOPLE", "400"))
READS = int(os.environ.get("BENCH_READS", "30"))
RECORD_SIZE = 5000
CORES = os.cpu_count() or 2


def main() -> None:
    bench_database("sharedrecord_bench_reads")
    from django.test import Client
    from onboard import ODS, write_export  # bench/onboard.py: the same export

    from ingestion.credentials import feed_credential_issue
    from ingestion.demo import synthetic_nhs_number
    from sharedrecord.basis import access_basis_record
    from sharedrecord.clients import api_client_register
    from sharedrecord.models import BasisKind, Entry, Organisation

    practice = bench_practice()
    importer, _ = Organisation.objects.get_or_create(
        ods_code=ODS,
        defaults={"name": "Bench onboarding", "kind": "acute", "dsa_start": "2025-01-01"},
    )
    Entry.objects.filter(source_org=importer).delete()
    feed_credential_issue(organisation=importer, system="bench")
    patient = long_record_person(
        number=synthetic_nhs_number(93_000), size=RECORD_SIZE, serial=3, practice=practice
    )
    user = bench_gp(practice)
    page_client = Client()
    page_client.force_login(user)
    access_basis_record(
        viewer=user, patient_id=str(patient.public_id),
        session_key=page_client.session.session_key or "", kind=BasisKind.DIRECT_CARE,
    )  # fmt: skip
    issued = api_client_register(
        name="Bench partner", grant="client-credentials", organisation=practice, role="gp"
    )
    api_client = Client()
    token = api_client.post(
        "/o/token/", {"grant_type": "client_credentials", "scope": "system/*.read"},
        headers={"Authorization": _basic(issued.client_id, issued.client_secret)},
    ).json()["access_token"]  # fmt: skip
    headers = {"Authorization": f"Bearer {token}", "X-Purpose-Of-Use": "TREAT"}

    def summary() -> None:
        assert page_client.get(f"/record/{patient.public_id}/").status_code == 200

    def everything() -> None:
        url: str | None = f"/fhir/R4/Patient/{patient.public_id}/$everything"
        params: dict[str, str] | None = {"_count": "1000"}
        while url:
            response: Any = api_client.get(url, params, headers=headers)
            body = b"".join(response.streaming_content)
            cut = body.find(b',"entry":[')
            links = json.loads(body if cut < 0 else body[:cut] + b"}")["link"]
            found = next((lk["url"] for lk in links if lk["relation"] == "next"), None)
            url = None if found is None else urlsplit(found).path + "?" + urlsplit(found).query
            params = None

    def timed(read: Any) -> list[float]:
        samples = []
        for _ in range(READS):
            start = time.perf_counter()
            read()
            samples.append((time.perf_counter() - start) * 1000)
        return samples

    summary()  # warm
    everything()
    idle = {"summary": timed(summary), "$everything": timed(everything)}
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        lines = write_export(export, PEOPLE, str(int(time.time())))
        before = Entry.objects.filter(source_org=importer).count()
        started = time.perf_counter()
        running = subprocess.Popen(
            [sys.executable, "manage.py", "feed_import", "--org", ODS, "--system", "bench",
             str(export), "--no-progress", "--jobs", str(CORES)],
            cwd=BASE_DIR, env=dict(os.environ), stdout=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(3)  # past start-up: the Patients file, then every core busy
        busy = {"summary": timed(summary), "$everything": timed(everything)}
        reading_ended = time.perf_counter()
        during = Entry.objects.filter(source_org=importer).count() - before
        still_running = running.poll() is None
        running.wait(timeout=3600)
        elapsed = time.perf_counter() - started
    print(f"reads of a {RECORD_SIZE:,}-entry record, {READS} each, in-process (ms)")
    print(f"{'read':<12} {'idle p50':>9} {'idle p95':>9} {'busy p50':>9} {'busy p95':>9}"
          f" {'p95 busy/idle':>14}")  # fmt: skip
    for name in idle:
        i50, i95 = p50_p95(idle[name])
        b50, b95 = p50_p95(busy[name])
        print(f"{name:<12} {i50:>9.1f} {i95:>9.1f} {b50:>9.1f} {b95:>9.1f} {b95 / i95:>14.2f}")
    print(
        f"import: {lines:,} lines with --jobs {CORES}, {lines / elapsed:,.0f} entries/s overall;"
        f" {during:,} entries stored while the reads ran"
        f" ({reading_ended - started:.1f} s; import {'still running' if still_running else 'done'}"
        " when they ended)"
    )


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


if __name__ == "__main__":
    main()
