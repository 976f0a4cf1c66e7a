"""What the read benchmarks share: a private database, the practice, a person with a long record.

Imported by bench/view.py, bench/api.py and bench/reads_under_ingest.py from beside them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from typing import Any

PRACTICE_ODS = "Z81001"


def bench_database(name: str, **env: str) -> None:
    """Point Django at a private database (made if missing), set it up and migrate it."""
    from sharedrecord.localservices import ensure_database, with_database

    database = with_database(os.environ["DATABASE_URL"], name)
    ensure_database(database)
    os.environ.update(
        {
            "DATABASE_URL": database,
            "DEBUG": "false",
            "STATIC_MANIFEST": "false",
            "ALLOWED_HOSTS": "testserver",
            "SESSION_COOKIE_SECURE": "false",
            "LOG_LEVEL": "WARNING",
            **env,
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def bench_practice() -> Any:
    """The GP practice the benchmark people are registered with."""
    from sharedrecord.models import Organisation

    practice, _ = Organisation.objects.get_or_create(
        ods_code=PRACTICE_ODS,
        defaults={"name": "Bench practice", "kind": "gp-practice",
                  "dsa_start": datetime.date(2025, 1, 1)},
    )  # fmt: skip
    return practice


def bench_gp(practice: Any) -> Any:
    """A GP at the practice."""
    from sharedrecord.models import User

    return User.objects.filter(username="bench.gp").first() or User.objects.create_user(
        "bench.gp", password="bench-password-123", organisation=practice, role="gp"
    )


def bench_ed_doctor() -> Any:
    """An A&E doctor at a hospital the person's feeds do not mention: no relationship, so the
    policy withholds restricted items (the sensitive codes' rule is in every statement)."""
    from sharedrecord.models import Organisation, User

    hospital, _ = Organisation.objects.get_or_create(
        ods_code="ZBH01",
        defaults={"name": "Bench hospital", "kind": "acute",
                  "dsa_start": datetime.date(2025, 1, 1)},
    )  # fmt: skip
    return User.objects.filter(username="bench.ed").first() or User.objects.create_user(
        "bench.ed", password="bench-password-123", organisation=hospital,
        role="clinical-practitioner",
    )  # fmt: skip


def long_record_person(*, number: str, size: int, serial: int, practice: Any) -> Any:
    """A person registered with the practice, made afresh with `size` entries; then ANALYZE
    (as autovacuum would after a load)."""
    from django.db import connection, transaction

    from sharedrecord.entries import entries_upsert, patient_create, patient_lock
    from sharedrecord.models import Patient

    Patient.objects.filter(nhs_number=number).delete()
    with transaction.atomic():
        patient_lock(nhs_number=number)
        patient = patient_create(nhs_number=number)
        patient.registered_gp_ods = PRACTICE_ODS
        patient.save()
        entries_upsert(patient=patient, source_org=practice, source_system="bench",
                       items=long_record_entries(size, serial), feed_message_id=None)  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE sharedrecord_entry")
    return patient


def long_record_entries(n: int, serial: int) -> list[Any]:
    """n entries of a long record: 60% results, the rest medications, problems, encounters,
    appointments and care plans, one in twenty still active."""
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
