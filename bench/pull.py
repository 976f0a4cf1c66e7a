"""Live pull benchmark (issue 25): the record summary with sources asked live at view time.

Run: flock /tmp/heavy.lock .venv/bin/python -m sharedrecord.localservices exec -- \
     .venv/bin/python bench/pull.py

Steps:
1. Make a private database (sharedrecord_bench_pull) and migrate it.
2. Start three local FHIR sources (tests/pullsource.py: real HTTP servers on
   127.0.0.1, OAuth2 token endpoint, Patient/_search, $everything) that each
   take 50 ms to answer every request, each holding the person with five
   items; register them as pull sources (timeout 2 s).
3. A person registered with the practice, with a small stored record
   (500 entries), and a GP's access basis.
4. Time RUNS GETs of the summary page in-process (Django's test client: view,
   policy, stored record, the live pull of all three sources, audit, template):
   first with no pull sources (the baseline), then with the three.
5. Add a fourth source that never answers within its 1 s timeout (it sleeps
   5 s) and time the page again: it should take about the timeout, no more.
Prints figures only; asserts nothing.
"""

from __future__ import annotations

import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BASE_DIR / "bench"))
from percentiles import p50_p95  # noqa: E402 (bench/, beside this file)
from records import bench_database, bench_gp, bench_practice, long_record_person  # noqa: E402

RUNS = int(os.environ.get("BENCH_PULL_RUNS", "40"))
SOURCE_DELAY = float(os.environ.get("BENCH_PULL_DELAY_MS", "50")) / 1000
SECRET = "BENCH_PULL_SECRET"


def _time(fn: Any, runs: int = RUNS) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return p50_p95(samples)


def main() -> None:
    os.environ[SECRET] = "pull-secret-123"
    bench_database("sharedrecord_bench_pull")
    from django.test import Client

    from ingestion.demo import synthetic_nhs_number
    from ingestion.pulling import pull_tokens_forget
    from sharedrecord.basis import access_basis_record
    from sharedrecord.models import BasisKind, Organisation, PullSource
    from sharedrecord.pullsources import pull_source_register
    from tests.pullsource import PullSourceServer, SourceState, care_items, person_resource

    practice = bench_practice()
    user = bench_gp(practice)
    patient = long_record_person(
        number=synthetic_nhs_number(95_001), size=500, serial=7, practice=practice
    )
    client = Client()
    client.force_login(user)
    access_basis_record(
        viewer=user, patient_id=str(patient.public_id),
        session_key=client.session.session_key or "", kind=BasisKind.DIRECT_CARE,
    )  # fmt: skip
    url = f"/record/{patient.public_id}/"
    PullSource.objects.all().delete()

    def page() -> str:
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        return response.content.decode()

    page()
    none = _time(page)

    servers = []
    for n in range(3):
        state = SourceState(delay=SOURCE_DELAY)
        state.people[patient.nhs_number] = person_resource(patient.nhs_number, pid=f"p{n}")
        state.records[f"p{n}"] = care_items(f"p{n}", prefix=f"s{n}")
        servers.append(PullSourceServer(state).__enter__())
    for n, server in enumerate(servers):
        organisation, _ = Organisation.objects.get_or_create(
            ods_code=f"ZBP0{n}", defaults={"name": f"Bench source {n}", "kind": "acute",
                                           "dsa_start": "2025-01-01"},
        )  # fmt: skip
        pull_source_register(
            organisation=organisation, base_url=server.fhir, token_url=server.token_url,
            client_id="pull-client", secret_name=SECRET, timeout_seconds=Decimal(2),
            resource_types=["AllergyIntolerance", "Condition"],
        )  # fmt: skip
    pull_tokens_forget()
    first = page()
    assert first.count("retrieved live at") == 3, "every source should answer"

    def cold_page() -> None:
        pull_tokens_forget()
        page()

    cold = _time(cold_page, runs=max(5, RUNS // 4))
    warm = _time(page)

    stuck_state = SourceState(delay=5.0)
    stuck = PullSourceServer(stuck_state).__enter__()
    organisation, _ = Organisation.objects.get_or_create(
        ods_code="ZBP09", defaults={"name": "Bench stuck source", "kind": "acute",
                                    "dsa_start": "2025-01-01"},
    )  # fmt: skip
    pull_source_register(
        organisation=organisation, base_url=stuck.fhir, token_url=stuck.token_url,
        client_id="pull-client", secret_name=SECRET, timeout_seconds=Decimal(1),
    )  # fmt: skip
    shown = page()
    assert "Bench stuck source system did not answer" in shown
    with_stuck = _time(page, runs=max(5, RUNS // 4))

    print(f"record summary, 500 stored entries, in-process GETs (ms: median / p95); "
          f"each source answers every request in {SOURCE_DELAY * 1000:.0f} ms")  # fmt: skip
    print(f"{'case':<58} {'runs':>5} {'median':>8} {'p95':>8}")
    rows = [
        ("no pull sources (baseline)", RUNS, none),
        ("3 live sources, token cached (search + $everything each)", RUNS, warm),
        ("3 live sources, new token each view (token + 2 requests)", max(5, RUNS // 4), cold),
        ("3 live sources + 1 that never answers (timeout 1,000 ms)", max(5, RUNS // 4), with_stuck),
    ]
    for name, runs, (p50, p95) in rows:
        print(f"{name:<58} {runs:>5} {p50:>8.1f} {p95:>8.1f}")
    PullSource.objects.all().delete()
    for server in [*servers, stuck]:
        server.__exit__(None, None, None)


if __name__ == "__main__":
    main()
