"""Audit benchmark: the trail at 10 million rows, its write rate and its governance queries.

Run: .venv/bin/python -m sharedrecord.localservices exec -- .venv/bin/python bench/audit_trail.py
(BENCH_AUDIT_ROWS changes the size; the default is 10,000,000.)

Steps:
1. Make a private database (sharedrecord_bench_audit), migrate it, and load
   N synthetic events spread over the last 12 months (monthly partitions,
   every index of the migrations in place): 300,000 people registered with
   50 practices, 5,000 users in 60 organisations, a realistic mix of
   actions, 0.5% of them break-glass. Bulk-loaded in SQL; the chain hashes of
   loaded rows are placeholders (the bench database is thrown away). The
   trail's insert trigger fills the record holders' index as it would in use.
2. Write rate through the one entry point (audit_event_record: stripe lock,
   hash, insert, head update) with 1 and with 4 concurrent writer processes,
   each event its own transaction, on top of the loaded rows.
3. p50/p95 of the governance questions through audit/selectors.py, 40
   random cases each, and beside each the plain index scan that answers the
   same question in bare SQL (one indexed predicate, no scope, no ORM):
   - by person: the newest 50 events about one NHS number;
   - by user over a month: every event of one user in one month;
   - record holder: the newest 50 events in one practice's view (its
     registered patients, or data it contributed), and the same for one month.
Prints figures only; asserts nothing.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
ROWS = int(os.environ.get("BENCH_AUDIT_ROWS", "10000000"))
CHUNK = 500_000
PEOPLE = 300_000
PRACTICES = 50
USERS = 5_000
CASES = 40
CORES = os.cpu_count() or 2

LOAD = f"""
INSERT INTO audit_event (
    occurred_at, stripe, seq, prev_hash, hash, action, outcome, actor_type, actor_name,
    actor_role, actor_role_code, actor_org_ods, nhs_number, patient_gp_ods, source_ods,
    purpose, detail, request_id)
SELECT
    now() - ((g %% 997)::float / 997 + (g / 997) %% 365) * interval '1 day',
    g %% 16, g, repeat('0', 64), repeat('1', 64),
    a.action, 'success', 'user', 'bench.user' || u, 'gp', 'R0260',
    'ZO' || lpad((u %% 60)::text, 3, '0'),
    CASE WHEN a.personal THEN '9' || lpad(p::text, 9, '0') ELSE '' END,
    CASE WHEN a.personal THEN 'ZG' || lpad((p %% {PRACTICES})::text, 3, '0') ELSE '' END,
    CASE WHEN a.shows THEN ARRAY['ZG' || lpad((p %% {PRACTICES})::text, 3, '0'), 'ZAC01']
         ELSE '{{}}'::varchar[] END,
    CASE WHEN a.action = 'break-glass' THEN 'ETREAT' WHEN a.personal THEN 'TREAT' ELSE '' END,
    CASE WHEN a.action = 'break-glass' THEN '{{"review": true}}'::jsonb ELSE '{{}}'::jsonb END,
    'bench-' || g
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
CROSS JOIN LATERAL (SELECT (g * 7919) %% {PEOPLE} AS p, (g * 104729) %% {USERS} AS u) AS k
CROSS JOIN LATERAL (
    SELECT action, personal, shows FROM (VALUES
        (0, 'record-view', true, true), (1, 'section-view', true, true),
        (2, 'section-view', true, true), (3, 'patient-search', true, false),
        (4, 'identity-view', true, false), (5, 'access-basis', true, false),
        (6, 'sign-in', false, false), (7, 'api-read', true, true),
        (8, 'document-view', true, true), (9, 'feed-processed', true, false))
        AS m(n, action, personal, shows)
    WHERE m.n = CASE WHEN g %% 200 = 0 THEN -1 ELSE g %% 10 END
    UNION ALL SELECT 'break-glass', true, false WHERE g %% 200 = 0
) AS a
"""


def load(database: str) -> float:
    import psycopg

    with psycopg.connect(database, autocommit=True) as conn:
        (present,) = conn.execute("SELECT count(*) FROM audit_event").fetchone() or (0,)
        if present >= ROWS:
            print(f"trail already holds {present:,} rows; not loading again")
            return 0.0
        conn.execute("SELECT audit_partitions_ensure((now() - interval '13 months')::date, 1)")
        started = time.perf_counter()
        for first in range(present + 1, ROWS + 1, CHUNK):
            last = min(first + CHUNK - 1, ROWS)
            conn.execute(LOAD, {"first": first, "last": last})
            print(f"  loaded {last:,} rows", flush=True)
        elapsed = time.perf_counter() - started
        conn.execute("ANALYZE audit_event, audit_event_holder")
    return float(ROWS - present) / elapsed


def _writer(args: tuple[str, int]) -> float:
    database, count = args
    os.environ["DATABASE_URL"] = database
    import django

    django.setup()
    from audit.models import AuditAction
    from audit.trail import AuditActor, AuditSubject, audit_event_record

    actor = AuditActor.system("bench-writer", org_ods="ZAC01")
    subject = AuditSubject(nhs_number="9000000009", gp_ods="ZG001")
    audit_event_record(action=AuditAction.API_READ, actor=actor, subject=subject)  # connect
    started = time.perf_counter()
    for n in range(count):
        audit_event_record(
            action=AuditAction.API_READ, actor=actor, subject=subject,
            detail={"entries": [f"bench-{n}"]}, source_ods=["ZAC01"],
        )  # fmt: skip
    return time.perf_counter() - started


def write_rate(database: str, writers: int, per_writer: int) -> float:
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        pool.map(_writer, [(database, per_writer)] * writers)
    return writers * per_writer / (time.perf_counter() - started)


def timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def figures(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return f"p50 {statistics.median(ordered):7.1f} ms, p95 {p95:7.1f} ms"


def queries(database: str) -> list[tuple[str, list[float], list[float], int]]:
    import datetime

    import psycopg
    from django.utils import timezone

    from audit.selectors import (
        AuditQuery,
        GovernanceScope,
        audit_events_matching,
        audit_events_page,
    )

    rng = random.Random(7)
    whole = GovernanceScope()
    now = timezone.now()
    raw = psycopg.connect(database, autocommit=True)
    results = []

    def month_of(offset: int) -> tuple[datetime.date, datetime.date]:
        end = (now - datetime.timedelta(days=30 * offset)).date()
        return end - datetime.timedelta(days=29), end

    cases: dict[str, list[tuple[Callable[[], Any], Callable[[], Any]]]] = {
        "by person (newest 50)": [],
        "by user over a month (all rows)": [],
        "record holder (newest 50)": [],
        "record holder, one month (newest 50)": [],
    }

    def ours_person(n: str) -> Any:
        return audit_events_page(scope=whole, query=AuditQuery(nhs_number=n))

    def raw_person(n: str) -> Any:
        return raw.execute("SELECT * FROM audit_event WHERE nhs_number = %s "
                           "ORDER BY occurred_at DESC LIMIT 51", [n]).fetchall()  # fmt: skip

    def ours_user(u: str, s: datetime.date, e: datetime.date) -> Any:
        return list(audit_events_matching(
            scope=whole, query=AuditQuery(user=u, date_from=s, date_to=e)))  # fmt: skip

    def raw_user(u: str, s: datetime.date, e: datetime.date) -> Any:
        return raw.execute(
            "SELECT * FROM audit_event WHERE actor_name = %s AND occurred_at >= %s "
            "AND occurred_at < %s ORDER BY occurred_at DESC",
            [u, s, e + datetime.timedelta(days=1)]).fetchall()  # fmt: skip

    def ours_holder(p: str, s: datetime.date | None, e: datetime.date | None) -> Any:
        return audit_events_page(scope=GovernanceScope(p),
                                 query=AuditQuery(date_from=s, date_to=e))  # fmt: skip

    def raw_holder(p: str, s: datetime.date | None, e: datetime.date | None) -> Any:
        if s is None or e is None:
            return raw.execute("SELECT * FROM audit_event WHERE patient_gp_ods = %s "
                               "ORDER BY occurred_at DESC LIMIT 51", [p]).fetchall()  # fmt: skip
        return raw.execute(
            "SELECT * FROM audit_event WHERE patient_gp_ods = %s AND occurred_at >= %s "
            "AND occurred_at < %s ORDER BY occurred_at DESC LIMIT 51",
            [p, s, e + datetime.timedelta(days=1)]).fetchall()  # fmt: skip

    for _ in range(CASES):
        number = "9" + f"{rng.randrange(PEOPLE):09d}"
        cases["by person (newest 50)"].append(
            (partial(ours_person, number), partial(raw_person, number))
        )
        user = f"bench.user{rng.randrange(USERS)}"
        start, end = month_of(rng.randrange(11))
        cases["by user over a month (all rows)"].append(
            (partial(ours_user, user, start, end), partial(raw_user, user, start, end))
        )
        practice = f"ZG{rng.randrange(PRACTICES):03d}"
        cases["record holder (newest 50)"].append(
            (partial(ours_holder, practice, None, None), partial(raw_holder, practice, None, None))
        )
        cases["record holder, one month (newest 50)"].append(
            (partial(ours_holder, practice, start, end), partial(raw_holder, practice, start, end))
        )
    for name, runs in cases.items():
        for ours, baseline in runs[:3]:  # warm the cache the same way for both
            ours()
            baseline()
        rows = len(runs[0][0]().events) if "newest" in name else len(runs[0][0]())
        ours_ms = [timed(ours) for ours, _ in runs]
        base_ms = [timed(baseline) for _, baseline in runs]
        results.append((name, ours_ms, base_ms, rows))
    raw.close()
    return results


def main() -> None:
    from sharedrecord.localservices import ensure_database, with_database

    database = with_database(os.environ["DATABASE_URL"], "sharedrecord_bench_audit")
    ensure_database(database)
    os.environ.update({"DATABASE_URL": database, "DEBUG": "false"})
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"loading {ROWS:,} synthetic audit events over 12 months ...", flush=True)
    load_rate = load(database)
    one = write_rate(database, 1, 2000)
    four = write_rate(database, 4, 1000)
    measured = queries(database)

    import psycopg

    with psycopg.connect(database) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM audit_event").fetchone() or (0,)
        sizes = {}
        for table in ("audit_event", "audit_event_holder"):
            (sizes[table],) = conn.execute(
                "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
                [table],
            ).fetchone() or ("?",)
        (holders,) = conn.execute("SELECT count(*) FROM audit_event_holder").fetchone() or (0,)
    print(f"machine: {CORES} cores; trail: {rows:,} rows, {sizes['audit_event']} with indexes, "
          f"monthly partitions; record holders' index: {holders:,} rows, "
          f"{sizes['audit_event_holder']}")  # fmt: skip
    if load_rate:
        print(f"bulk load (SQL, every index in place): {load_rate:,.0f} rows/s")
    print(f"audit_event_record, 1 writer:  {one:,.0f} events/s (each its own transaction)")
    print(f"audit_event_record, 4 writers: {four:,.0f} events/s (16 chain stripes)")
    print(f"governance queries ({CASES} random cases each), ours vs plain index scan:")
    for name, ours_ms, base_ms, sample_rows in measured:
        print(f"  {name:<38} ours {figures(ours_ms)} | plain index {figures(base_ms)} "
              f"| e.g. {sample_rows} rows")  # fmt: skip


if __name__ == "__main__":
    main()
