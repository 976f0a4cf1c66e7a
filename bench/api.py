"""FHIR read API benchmark: $everything for persons with 5,000 and 50,000 entries.

Run: .venv/bin/python -m sharedrecord.localservices exec -- .venv/bin/python bench/api.py

Steps:
1. Make a private database (sharedrecord_bench_api), migrate it, and load
   each person's entries (bench/view.py's synthetic long record).
2. Start a real web process (gunicorn, one sync worker) on it, register a
   partner system and get its token from /o/token/ over HTTP.
3. Read the whole record through $everything, page after page (_count=1000,
   following next links) over HTTP: time to last byte of all pages, and the
   web worker's peak resident memory (VmHWM) before and after.
4. Baseline in the same run: the raw read of the same rows (resource::text),
   with no policy, audit, paging or HTTP.
Prints figures only; asserts nothing.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
SIZES = [int(n) for n in os.environ.get("BENCH_API_SIZES", "5000,50000").split(",")]
PAGE = 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    from sharedrecord.localservices import ensure_database, with_database

    database = with_database(os.environ["DATABASE_URL"], "sharedrecord_bench_api")
    ensure_database(database)
    env = {
        "DATABASE_URL": database,
        "DEBUG": "false",
        "STATIC_MANIFEST": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key"),
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    import django

    django.setup()
    import psutil
    import requests
    from django.core.management import call_command
    from django.db import connection, transaction
    from view import _entries  # bench/view.py: the same synthetic long record

    from ingestion.demo import synthetic_nhs_number
    from sharedrecord.clients import api_client_register
    from sharedrecord.entries import entries_upsert, patient_create, patient_lock
    from sharedrecord.models import Organisation, Patient

    call_command("migrate", verbosity=0)
    gp_org, _ = Organisation.objects.get_or_create(
        ods_code="Z81001",
        defaults={"name": "Bench practice", "kind": "gp-practice",
                  "dsa_start": datetime.date(2025, 1, 1)},
    )  # fmt: skip
    people = []
    for serial, size in enumerate(SIZES):
        number = synthetic_nhs_number(91_000 + serial)
        Patient.objects.filter(nhs_number=number).delete()
        with transaction.atomic():
            patient_lock(nhs_number=number)
            patient = patient_create(nhs_number=number)
            patient.registered_gp_ods = "Z81001"
            patient.save()
            entries_upsert(patient=patient, source_org=gp_org, source_system="bench",
                           items=_entries(size, serial), feed_message_id=None)  # fmt: skip
        people.append(patient)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE sharedrecord_entry")
    issued = api_client_register(
        name="Bench partner", grant="client-credentials", organisation=gp_org, role="gp"
    )
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "sharedrecord.wsgi", "--workers", "1",
         "--bind", f"127.0.0.1:{port}", "--timeout", "600"],
        cwd=BASE_DIR, env={**os.environ, **env},
    )  # fmt: skip
    root = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{root}/healthz", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.2)
        worker = psutil.Process(server.pid).children()[0].pid
        token = requests.post(
            f"{root}/o/token/", data={"grant_type": "client_credentials", "scope": "system/*.read"},
            auth=(issued.client_id, issued.client_secret), timeout=10,
        ).json()["access_token"]  # fmt: skip
        headers = {"Authorization": f"Bearer {token}", "X-Purpose-Of-Use": "TREAT"}
        print(f"$everything over HTTP, {PAGE} entries a page, one gunicorn sync worker")
        print(f"{'entries':>8} {'pages':>6} {'last byte (s)':>14} {'MB':>8}"
              f" {'worker peak RSS (MB)':>22} {'raw read (s)':>13}")  # fmt: skip
        for patient in people:
            before = _peak_kb(worker)
            url: str | None = f"{root}/fhir/R4/Patient/{patient.public_id}/$everything"
            params: dict[str, str] | None = {"_count": str(PAGE)}
            start = time.perf_counter()
            pages = size = entries = 0
            while url:
                response = requests.get(url, params=params, headers=headers, timeout=600)
                size += len(response.content)
                bundle = response.json()
                entries += sum(1 for e in bundle.get("entry", []) if e["search"]["mode"] == "match")
                pages += 1
                url = next((lk["url"] for lk in bundle["link"] if lk["relation"] == "next"), None)
                params = None
            elapsed = time.perf_counter() - start
            after = _peak_kb(worker)
            raw_start = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT resource::text FROM sharedrecord_entry WHERE patient_id = %s",
                    [patient.pk],
                )
                cursor.fetchall()
            raw = time.perf_counter() - raw_start
            print(
                f"{entries:>8} {pages:>6} {elapsed:>14.2f} {size / 1e6:>8.1f}"
                f" {before / 1024:>9.1f} -> {after / 1024:>7.1f} {raw:>13.3f}"
            )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
