"""FHIR read API benchmark: $everything for persons with 2,000, 5,000 and 50,000 entries.

Run: .venv/bin/python -m sharedrecord.localservices exec -- .venv/bin/python bench/api.py

Steps:
1. Make a private database (sharedrecord_bench_api), migrate it, and load
   each person's entries (bench/view.py's synthetic long record); ANALYZE.
   BENCH_API_ARRIVALS=over-time spreads their arrival a second apart, in order.
2. Start a real web process (gunicorn, one sync worker) on it, register a
   partner system (BENCH_API_PARTNER: "gp", the person's practice's, or "ed",
   a hospital's the feeds do not mention) and get its token from /o/token/
   over HTTP.
3. Read the whole record through $everything, page after page (_count=1000, then 5000,
   following next links) over HTTP, several times: time to last byte of all
   pages (p50 / p95), and the web worker's peak resident memory (VmHWM)
   before and after.
4. Baseline in the same run, as often: the raw read of the same rows
   (resource::text), with no policy, audit, paging or HTTP.
5. What the audit adds: the same whole-record read in-process (Django's test
   client), with and without the audit write (bench only: the module's
   audit_event_record replaced by a no-op).
Prints figures only; asserts nothing.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from percentiles import p50_p95  # noqa: E402 (bench/, beside this file)
from records import (  # noqa: E402
    bench_database,
    bench_ed_doctor,
    bench_practice,
    long_record_person,
)

SIZES = [int(n) for n in os.environ.get("BENCH_API_SIZES", "2000,5000,50000").split(",")]
# Page sizes a client asks for: the old most (1,000) and the new (FHIR_PAGE_MAX, 5,000).
PAGES = [int(n) for n in os.environ.get("BENCH_API_PAGES", "1000,5000").split(",")]
# "one-upsert": each person's entries arrive together (one received_at, so the
# paging order is the random public ids'); "over-time": one a second, in order.
ARRIVALS = os.environ.get("BENCH_API_ARRIVALS", "one-upsert")
# A worktree of its own may name its own database (its migrations may differ).
DATABASE = os.environ.get("BENCH_API_DATABASE", "sharedrecord_bench_api")
# "gp": the person's practice's system (a relationship: restricted items shown); "ed": a
# hospital's system the feeds do not mention (restricted items withheld by the policy).
PARTNER = os.environ.get("BENCH_API_PARTNER", "gp")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _runs(size: int) -> int:
    return 20 if size <= 5000 else 3


def _peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    env = {
        "ALLOWED_HOSTS": "127.0.0.1,testserver",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-secret-key"),
    }
    bench_database(DATABASE, **env)
    import psutil
    import requests
    from django.db import connection
    from django.test import Client

    from ingestion.demo import synthetic_nhs_number
    from sharedrecord.clients import api_client_register
    from sharedrecord.models import Entry

    gp_org = bench_practice()
    people = [
        long_record_person(
            number=synthetic_nhs_number(91_000 + serial), size=size, serial=serial,
            practice=gp_org,
        )
        for serial, size in enumerate(SIZES)
    ]  # fmt: skip
    if ARRIVALS == "over-time":
        # Each entry arrives a second after the one before (as feeds bring them),
        # rather than all in one upsert: the paging index then follows the rows'
        # order on disk, as in a record built up over years.
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE sharedrecord_entry SET received_at = received_at"
                " - (SELECT max(id) FROM sharedrecord_entry) * interval '1 second'"
                " + id * interval '1 second'"
            )
            cursor.execute("VACUUM ANALYZE sharedrecord_entry")
    if PARTNER == "ed":  # a hospital's system the person's feeds do not mention
        hospital = bench_ed_doctor().organisation
        issued = api_client_register(
            name="Bench hospital system", grant="client-credentials", organisation=hospital,
            role="clinical-practitioner",
        )  # fmt: skip
    else:
        issued = api_client_register(
            name="Bench partner", grant="client-credentials", organisation=gp_org, role="gp"
        )
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "sharedrecord.wsgi", "--workers", "1",
         "--bind", f"127.0.0.1:{port}", "--timeout", "600"],
        cwd=BASE_DIR, env=dict(os.environ),
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

        def whole(get: Any, first: str, page: int = PAGES[-1]) -> tuple[int, int, int]:
            url: str | None = first
            params: dict[str, str] | None = {"_count": str(page)}
            pages = size = entries = 0
            while url:
                body = get(url, params)
                size += len(body)
                # Only the Bundle's head is parsed (for the next link): the client's
                # own JSON parsing is not the server's time.
                cut = body.find(b',"entry":[')
                bundle = json.loads(body if cut < 0 else body[:cut] + b"}")
                entries += body.count(b'"mode":"match"') + body.count(b'"mode": "match"')
                pages += 1
                url = next((lk["url"] for lk in bundle["link"] if lk["relation"] == "next"), None)
                params = None
            return pages, size, entries

        def over_http(url: str, params: dict[str, str] | None) -> bytes:
            return bytes(requests.get(url, params=params, headers=headers, timeout=600).content)

        for page, patient in [(page, patient) for page in PAGES for patient in people]:
            if patient == people[0]:
                print(
                    f"\n$everything over HTTP, {page} entries a page, arrivals {ARRIVALS},"
                    " one gunicorn sync worker (s)"
                )
                print(
                    f"{'entries':>8} {'pages':>6} {'runs':>5} {'p50':>8} {'p95':>8} {'raw p50':>8}"
                    f" {'raw p95':>8} {'p50/raw':>8} {'p95/raw':>8} {'MB':>6}"
                    f" {'worker peak RSS (MB)':>22}"
                )
            before = _peak_kb(worker)
            first = f"{root}/fhir/R4/Patient/{patient.public_id}/$everything"
            samples, raws = [], []
            for _ in range(_runs(Entry.objects.filter(patient=patient).count())):
                start = time.perf_counter()
                pages, size, entries = whole(over_http, first, page)
                samples.append(time.perf_counter() - start)
                raw_start = time.perf_counter()
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT resource::text FROM sharedrecord_entry WHERE patient_id = %s",
                        [patient.pk],
                    )
                    cursor.fetchall()
                raws.append(time.perf_counter() - raw_start)
            after = _peak_kb(worker)
            p50, p95 = p50_p95(samples)
            raw50, raw95 = p50_p95(raws)
            print(
                f"{entries:>8} {pages:>6} {len(samples):>5} {p50:>8.3f} {p95:>8.3f} {raw50:>8.3f}"
                f" {raw95:>8.3f} {p50 / raw50:>8.1f} {p95 / raw95:>8.1f} {size / 1e6:>6.1f}"
                f" {before / 1024:>9.1f} -> {after / 1024:>7.1f}"
            )

        # What the audit adds, in-process (the same view, policy and SQL; no network).
        import sharedrecord.fhir_entries as entries_module

        audited = vars(entries_module)["audit_event_record"]

        def no_audit(**_: Any) -> int:
            return 0

        client = Client()

        def in_process(url: str, params: dict[str, str] | None) -> bytes:
            parts = urlsplit(url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            response: Any = client.get(path, params, headers=headers)
            return b"".join(response.streaming_content)

        print(f"\nthe same reads in-process, {PAGES[-1]} a page, audit write on and off (s, p50)")
        print(f"{'entries':>8} {'audited':>8} {'no audit':>9} {'audit adds':>11}")
        for patient in people:
            first = f"{root}/fhir/R4/Patient/{patient.public_id}/$everything"
            runs = _runs(Entry.objects.filter(patient=patient).count())
            timed: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(runs):
                for audit in (True, False):
                    vars(entries_module)["audit_event_record"] = audited if audit else no_audit
                    try:
                        start = time.perf_counter()
                        whole(in_process, first)
                        timed[audit].append(time.perf_counter() - start)
                    finally:
                        vars(entries_module)["audit_event_record"] = audited
            on, off = statistics.median(timed[True]), statistics.median(timed[False])
            count = Entry.objects.filter(patient=patient).count()
            print(f"{count:>8} {on:>8.3f} {off:>9.3f} {(on - off) / off * 100:>10.0f}%")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
