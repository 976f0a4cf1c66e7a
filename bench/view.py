"""Record page benchmark: server time of the summary and every section, audit on and off.

Run: .venv/bin/python -m sharedrecord.localservices exec -- .venv/bin/python bench/view.py

Steps:
1. Make a private database (sharedrecord_bench_view) and migrate it.
2. For persons with 5,000 and 50,000 entries (60% results, the rest spread
   over medications, problems, encounters, appointments and care plans; one in
   twenty still active, like a long record), record a GP's access basis, and
   ANALYZE (as autovacuum would after a load).
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

import datetime
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from percentiles import p50_p95  # noqa: E402 (bench/, beside this file)

SIZES = [int(n) for n in os.environ.get("BENCH_VIEW_SIZES", "5000,50000").split(",")]
RUNS = int(os.environ.get("BENCH_VIEW_RUNS", "15"))


def _entries(n: int, serial: int) -> list[Any]:
    from sharedrecord.entrydata import EntryData

    now = datetime.datetime.now(datetime.UTC)
    kinds = [
        ("Observation", "results", 60),
        ("MedicationStatement", "medications", 10),
        ("Condition", "problems", 8),
        ("Encounter", "encounters", 14),
        ("Appointment", "appointments", 4),
        ("CarePlan", "care-plans", 4),
    ]
    out = []
    i = 0
    for resource_type, section, share in kinds:
        for k in range(n * share // 100):
            when = now - datetime.timedelta(days=i % 3000, hours=i % 24)
            resource: dict[str, Any] = {
                "resourceType": resource_type,
                "id": f"b{serial}-{i}",
                # Like a long record: most medications stopped, problems resolved.
                "status": "final"
                if resource_type == "Observation"
                else ("active" if k % 20 == 0 else "completed"),
                "code": {
                    "coding": [
                        {
                            "system": "http://snomed.info/sct",
                            "code": str(1000 + k % 40),
                            "display": f"{resource_type} item {k % 40}",
                        }
                    ]
                },
            }
            if resource_type == "Observation":
                resource["valueQuantity"] = {"value": 40 + k % 30, "unit": "mmol/mol"}
                resource["referenceRange"] = [{"low": {"value": 20}, "high": {"value": 48}}]
            body = json.dumps(resource, sort_keys=True)
            out.append(
                EntryData(
                    resource_type=resource_type,
                    source_id=resource["id"],
                    section=section,
                    resource=resource,
                    content_hash=hashlib.sha256(body.encode()).hexdigest(),
                    effective_at=when,
                    status=str(resource["status"]),
                    code=str(1000 + k % 40),
                )
            )
            i += 1
    return out


def _time(fn: Any) -> tuple[float, float]:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return p50_p95(samples)


def main() -> None:
    from sharedrecord.localservices import ensure_database, with_database

    database = with_database(os.environ["DATABASE_URL"], "sharedrecord_bench_view")
    ensure_database(database)
    os.environ.update(
        {
            "DATABASE_URL": database,
            "DEBUG": "false",
            "STATIC_MANIFEST": "false",
            "ALLOWED_HOSTS": "testserver",
            "SESSION_COOKIE_SECURE": "false",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", verbosity=0)
    from django.db import transaction

    from ingestion.demo import synthetic_nhs_number
    from sharedrecord.basis import access_basis_record
    from sharedrecord.entries import entries_upsert, patient_create, patient_lock
    from sharedrecord.models import BasisKind, Entry, Organisation, Patient, RecordSection, User

    gp_org, _ = Organisation.objects.get_or_create(
        ods_code="Z81001",
        defaults={
            "name": "Bench practice",
            "kind": "gp-practice",
            "dsa_start": datetime.date(2025, 1, 1),
        },
    )
    user = User.objects.filter(username="bench.gp").first() or User.objects.create_user(
        "bench.gp", password="bench-password-123", organisation=gp_org, role="gp"
    )
    import sharedrecord.record as record_module

    audited = vars(record_module)["audit_event_record"]

    def no_audit(**_: Any) -> int:
        return 0

    print(f"record pages, {RUNS} GETs each, in-process (ms: median / p95)")
    print(
        f"{'entries':>8} {'page':<14} {'items':>6} {'median':>7} {'p95':>7} {'queries':>8}"
        f" {'no audit':>9} {'audit adds':>11} {'raw read':>9} {'/ raw':>6}"
    )
    for serial, size in enumerate(SIZES):
        number = synthetic_nhs_number(90_000 + serial)
        Patient.objects.filter(nhs_number=number).delete()

        with transaction.atomic():
            patient_lock(nhs_number=number)
            patient = patient_create(nhs_number=number)
            patient.registered_gp_ods = "Z81001"
            patient.save()
            entries_upsert(
                patient=patient,
                source_org=gp_org,
                source_system="bench",
                items=_entries(size, serial),
                feed_message_id=None,
            )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE sharedrecord_entry")
        client = Client()
        client.force_login(user)
        session_key = client.session.session_key or ""
        access_basis_record(
            viewer=user,
            patient_id=str(patient.public_id),
            session_key=session_key,
            kind=BasisKind.DIRECT_CARE,
        )

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
                f"{count:>8} {name:<14} {items:>6} {timed[0]:>7.1f} {timed[1]:>7.1f}"
                f" {count_of_queries:>8} {bare[0]:>9.1f} {adds:>10.0f}% {baseline[0]:>9.1f}"
                f" {timed[0] / baseline[0]:>6.1f}"
            )


if __name__ == "__main__":
    main()
