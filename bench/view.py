"""Record page benchmark: server time of the summary and every section, audit on and off.

Run: .venv/bin/python -m sharedrecord.localservices exec -- .venv/bin/python bench/view.py

Steps:
1. Make a private database (BENCH_VIEW_DATABASE, default sharedrecord_bench_view) and
   migrate it.
2. For persons with 5,000 and 50,000 entries (60% results, the rest spread
   over medications, problems, encounters, appointments and care plans; one in
   twenty still active, like a long record), record each viewer's access
   basis, and ANALYZE (as autovacuum would after a load). The viewers
   (BENCH_VIEW_VIEWERS): "gp", the person's GP, and "ed", an A&E doctor at a
   hospital the feeds do not mention (a self-claimed direct care basis: no
   relationship, so restricted items are withheld and the policy's rule on
   sensitive codes is in every statement).
3. Time RUNS GETs of the summary page and of each section's first page
   in-process (Django's test client: the whole view, policy, audit write and
   template, without the network), and count the queries of one.
4. The same GETs with the audit write taken out (bench only: the module's
   audit_event_record replaced by a no-op), in the same run: what the audit
   adds to a read.
5. Baseline in the same run: the raw read of the same person's rows
   (resource::text) with no policy, audit or rendering.
Prints figures only; asserts nothing.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from percentiles import p50_p95  # noqa: E402 (bench/, beside this file)
from records import (  # noqa: E402
    bench_database,
    bench_ed_doctor,
    bench_gp,
    bench_practice,
    long_record_person,
)

SIZES = [int(n) for n in os.environ.get("BENCH_VIEW_SIZES", "5000,50000").split(",")]
RUNS = int(os.environ.get("BENCH_VIEW_RUNS", "15"))
# A worktree of its own may name its own database (its migrations may differ).
DATABASE = os.environ.get("BENCH_VIEW_DATABASE", "sharedrecord_bench_view")
VIEWERS = os.environ.get("BENCH_VIEW_VIEWERS", "gp,ed").split(",")
# What each viewer says of their part in the person's care (the ED doctor has no
# relationship in the feeds, so their basis is self-claimed).
CLAIMS = {"gp": "", "ed": "Treating the person in the emergency department tonight"}


def _time(fn: Any) -> tuple[float, float]:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return p50_p95(samples)


def main() -> None:
    bench_database(DATABASE)
    from django.test import Client

    from ingestion.demo import synthetic_nhs_number
    from sharedrecord.basis import access_basis_record
    from sharedrecord.models import BasisKind

    gp_org = bench_practice()
    users = {"gp": bench_gp(gp_org), "ed": bench_ed_doctor()}
    import sharedrecord.record as record_module

    audited = vars(record_module)["audit_event_record"]

    def no_audit(**_: Any) -> int:
        return 0

    print(f"record pages, {RUNS} GETs each, in-process (ms: median / p95)")
    print(
        f"{'viewer':<6} {'entries':>8} {'page':<14} {'items':>6} {'median':>7} {'p95':>7} {'queries':>8}"
        f" {'no audit':>9} {'audit adds':>11} {'raw read':>9} {'/ raw':>6}"
    )
    for serial, size in enumerate(SIZES):
        patient = long_record_person(
            number=synthetic_nhs_number(90_000 + serial), size=size, serial=serial,
            practice=gp_org,
        )  # fmt: skip
        for viewer in VIEWERS:
            client = Client()
            client.force_login(users[viewer])
            access_basis_record(
                viewer=users[viewer],
                patient_id=str(patient.public_id),
                session_key=client.session.session_key or "",
                kind=BasisKind.DIRECT_CARE,
                claimed_relationship=CLAIMS[viewer],
            )
            _pages(viewer, patient, client, audited, no_audit)


def _pages(viewer: str, patient: Any, client: Any, audited: Any, no_audit: Any) -> None:
    """Time the summary and every section's first page for one viewer."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    import sharedrecord.record as record_module
    from sharedrecord.models import Entry, RecordSection

    def raw(pk: int = patient.pk) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT resource::text FROM sharedrecord_entry WHERE patient_id = %s", [pk]
            )
            cursor.fetchall()

    baseline = _time(raw)
    count = Entry.objects.filter(patient=patient).count()
    pages = [("summary", "")] + [(value, value) for value in RecordSection.values]
    for name, path in pages:
        url = f"/record/{patient.public_id}/{path}"
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        items = response.content.decode().count('<tr class="nhsuk-table__row" data-entry=')
        timed = _time(lambda c=client, u=url: c.get(u))
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        count_of_queries = len(queries)  # now: the next request empties the log
        vars(record_module)["audit_event_record"] = no_audit
        try:
            bare = _time(lambda c=client, u=url: c.get(u))
        finally:
            vars(record_module)["audit_event_record"] = audited
        adds = (timed[0] - bare[0]) / bare[0] * 100
        print(
            f"{viewer:<6} {count:>8} {name:<14} {items:>6} {timed[0]:>7.1f} {timed[1]:>7.1f}"
            f" {count_of_queries:>8} {bare[0]:>9.1f} {adds:>10.0f}% {baseline[0]:>9.1f}"
            f" {timed[0] / baseline[0]:>6.1f}"
        )


if __name__ == "__main__":
    main()
