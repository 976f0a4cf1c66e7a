"""Where one $everything request's time goes: its queries, timed, and a Python profile.

Run: .venv/bin/python -m sharedrecord.localservices exec -- .venv/bin/python bench/api_profile.py

Steps:
1. Make a private database (BENCH_API_DATABASE, as bench/api.py), a person
   with BENCH_PROFILE_SIZE entries (bench/view.py's synthetic long record)
   and a partner system with a client-credentials token.
2. Read the person's whole record in-process (Django's test client, one
   page of FHIR_PAGE_MAX) RUNS times to warm up, then RUNS more: the p50.
3. One more read with every statement's text and time recorded (the
   statements' own time as the client sees it, round trip included).
4. One more under cProfile: the functions that take the most time, by
   cumulative time.
Prints figures only; asserts nothing.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from records import bench_database, bench_practice, long_record_person  # noqa: E402

SIZE = int(os.environ.get("BENCH_PROFILE_SIZE", "2000"))
RUNS = int(os.environ.get("BENCH_PROFILE_RUNS", "30"))
DATABASE = os.environ.get("BENCH_API_DATABASE", "sharedrecord_bench_api")


def main() -> None:
    bench_database(DATABASE, ALLOWED_HOSTS="testserver")
    from django.db import connection
    from django.test import Client
    from oauth2_provider.models import AccessToken

    from ingestion.demo import synthetic_nhs_number
    from sharedrecord.clients import api_client_register

    gp_org = bench_practice()
    patient = long_record_person(
        number=synthetic_nhs_number(92_000), size=SIZE, serial=90, practice=gp_org
    )
    issued = api_client_register(
        name="Bench profile partner", grant="client-credentials", organisation=gp_org, role="gp"
    )
    client = Client()
    response: Any = client.post(
        "/o/token/",
        {"grant_type": "client_credentials", "scope": "system/*.read"},
        headers={"Authorization": _basic(issued.client_id, issued.client_secret)},
    )
    token = response.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "X-Purpose-Of-Use": "TREAT"}
    path = f"/fhir/R4/Patient/{patient.public_id}/$everything"

    def read() -> int:
        client.cookies.clear()  # as a partner system: no session
        got: Any = client.get(path, {"_count": "5000"}, headers=headers)
        assert got.status_code == 200, got.status_code
        return len(b"".join(got.streaming_content))

    for _ in range(RUNS):
        read()
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        read()
        samples.append((time.perf_counter() - start) * 1000)
    print(f"$everything of {SIZE} entries in-process: p50 {statistics.median(samples):.1f} ms")
    raws = []
    for _ in range(RUNS):
        start = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT resource::text FROM sharedrecord_entry WHERE patient_id = %s", [patient.pk]
            )
            cursor.fetchall()
        raws.append((time.perf_counter() - start) * 1000)
    print(f"raw read of the same rows: p50 {statistics.median(raws):.1f} ms")

    timed: list[tuple[float, float, str]] = []

    def timer(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timed.append((start, time.perf_counter() - start, sql))

    for _ in range(3):
        timed.clear()
        with connection.execute_wrapper(timer):
            start = time.perf_counter()
            read()
            whole = (time.perf_counter() - start) * 1000
        in_sql = sum(t for _, t, _ in timed) * 1000
        print(f"\none read: {whole:.1f} ms, {len(timed)} statements taking {in_sql:.1f} ms")
        for at, took, sql in timed:
            text = " ".join(sql.split())
            print(f"{(at - start) * 1000:>6.1f} +{took * 1000:>6.2f} ms  {text[:140]}")

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(10):
        read()
    profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("cumulative").print_stats(60)
    print("\ncProfile of 10 reads (cumulative):")
    print(out.getvalue())
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(30)
    print("\ncProfile of 10 reads (own time):")
    print(out.getvalue())
    AccessToken.objects.filter(token=token).delete()


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


if __name__ == "__main__":
    main()
