"""HL7 v2 benchmark: messages per second from an MLLP socket to committed rows.

Run: .venv/bin/python -m sharedrecord.localservices exec -- .venv/bin/python bench/hl7v2.py

Steps:
1. Make a private database (sharedrecord_bench), migrate it, and start real
   processes on it: `manage.py mllp_listen`, gunicorn for the FHIR feed API,
   and one Celery worker on a private queue.
2. Build N synthetic messages, alternating an ADT^A01 admission (Patient +
   Encounter) and an ORU^R01 result (Patient + DiagnosticReport + 10
   numeric Observations), each for its own NHS number.
3. MLLP: SENDERS connections, each sending its share one message at a time
   and waiting for the ACK (as integration engines do). Rate = messages /
   (first byte sent to last row committed). ACK round trip p50/p95.
4. FHIR, same content, same run: the same messages under new NHS numbers are
   converted to the FHIR transaction Bundles the worker would build, then
   POSTed to /api/v1/feeds/fhir over the same number of connections.
Prints figures only; asserts nothing.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "600"))
SENDERS = int(os.environ.get("BENCH_SENDERS", "4"))
CORES = os.cpu_count() or 2
ODS = "ZAC01"


def message(serial: int, run: str, nhs_number: str) -> bytes:
    """An ADT^A01 (even serials) or an ORU^R01 with 10 results (odd), CR-separated."""
    control = f"{run}-{serial}"
    kind = "ADT^A01" if serial % 2 == 0 else "ORU^R01"
    segments = [
        f"MSH|^~\\&|PAS|{ODS}|SHAREDRECORD|BOROUGH|20261120101500||{kind}|{control}|P|2.4",
        "EVN|A01|20261120101500",
        f"PID|1||{nhs_number}^^^NHS^NH~M{serial}^^^{ODS}^MR||BENCH^PERSON{serial}^^^MX||"
        f"19{40 + serial % 60:02d}0{1 + serial % 9}1{serial % 10}|U|||1 BENCH ROAD^^TOWN^^ZZ1 1AA",
        "PD1|||RIVERSIDE MEDICAL PRACTICE^^Z81001",
        f"PV1|1|I|WARD^7^BED 3||||||||||||||||V{serial}|||||||||||||||||||||||||20261120094500",
    ]
    if kind == "ORU^R01":
        segments.append(
            f"OBR|1|ORD{serial}|LAB{serial}|24362-6^Renal panel^LN|||20261120090000||||||||"
            "|||||||20261120100000|||F"
        )
        analytes = [("2823-3", "Potassium", "mmol/L", "3.5-5.3"),
                    ("2951-2", "Sodium", "mmol/L", "133-146"),
                    ("2160-0", "Creatinine", "umol/L", "59-104"),
                    ("3094-0", "Urea", "mmol/L", "2.5-7.8")]  # fmt: skip
        for n in range(10):
            code, name, unit, ref = analytes[n % len(analytes)]
            value = 4 + (serial + n) % 7
            flag = "H" if value > 8 else "N"
            segments.append(
                f"OBX|{n + 1}|NM|{code}^{name}^LN||{value}.{n}|{unit}|{ref}|{flag}|||F|||"
                "20261120090000"
            )
    return ("\r".join(segments) + "\r").encode()


def start_processes(env: dict[str, str], web_port: int, mllp_port: int, queue: str) -> list[Any]:
    python = sys.executable
    web = subprocess.Popen(
        [python, "-m", "gunicorn", "sharedrecord.wsgi:application", "--bind",
         f"127.0.0.1:{web_port}", "--workers", "2", "--threads", "4", "--worker-class",
         "gthread", "--log-level", "warning"],
        env=env, cwd=BASE_DIR,
    )  # fmt: skip
    listener = subprocess.Popen(
        [python, "manage.py", "mllp_listen", "--host", "127.0.0.1", "--port", str(mllp_port)],
        env=env, cwd=BASE_DIR, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    from sharedrecord.localservices import celery_workers

    # The deployed layout: a pool per queue (HL7 v2 messages go to the feeds queue).
    workers = [
        subprocess.Popen(command, env=env, cwd=BASE_DIR)
        for command in celery_workers(python, queue=queue, loglevel="WARNING")
    ]
    return [web, listener, *workers]


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on {port}") from None
            time.sleep(0.2)


def in_parallel(work: list[Any], send: Callable[[list[Any], list[float]], None]) -> list[float]:
    """Run `send` over SENDERS shares of `work` at once; return every round trip."""
    timings: list[float] = []
    lock = threading.Lock()

    def run(share: list[Any]) -> None:
        mine: list[float] = []
        send(share, mine)
        with lock:
            timings.extend(mine)

    threads = [threading.Thread(target=run, args=(work[i::SENDERS],)) for i in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return timings


def mllp_send(port: int) -> Callable[[list[bytes], list[float]], None]:
    from ingestion.mllp import FrameReader, frame

    def send(messages: list[bytes], timings: list[float]) -> None:
        reader = FrameReader(1_000_000)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            for payload in messages:
                started = time.perf_counter()
                sock.sendall(frame(payload))
                acks: list[bytes] = []
                while not acks:
                    data = sock.recv(65536)
                    if not data:
                        raise SystemExit("the listener closed the connection")
                    acks = [f.payload for f in reader.feed(data)]
                timings.append(time.perf_counter() - started)
                if b"MSA|AA" not in acks[0]:
                    raise SystemExit(f"not accepted: {acks[0][:200]!r}")

    return send


def fhir_send(base: str, token: str) -> Callable[[list[bytes], list[float]], None]:
    def send(bundles: list[bytes], timings: list[float]) -> None:
        for body in bundles:
            started = time.perf_counter()
            request = urllib.request.Request(
                f"{base}/api/v1/feeds/fhir", data=body, method="POST",
                headers={"Authorization": f"Bearer {token}",
                         "Content-Type": "application/fhir+json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=60) as response:
                if response.status != 202:
                    raise SystemExit(f"FHIR feed answered {response.status}")
            timings.append(time.perf_counter() - started)

    return send


def wait_all_done(since: Any, count: int, timeout: float = 900) -> None:
    from ingestion.models import FeedMessage

    deadline = time.monotonic() + timeout
    while True:
        messages = FeedMessage.objects.filter(received_at__gte=since)
        if (
            messages.count() >= count
            and not messages.filter(status__in=["received", "processing"]).exists()
        ):
            return
        if time.monotonic() > deadline:
            raise SystemExit("messages did not finish in time")
        time.sleep(0.05)


def phase(
    name: str, work: list[bytes], send: Callable[[list[bytes], list[float]], None]
) -> dict[str, Any]:
    from django.utils import timezone

    from ingestion.models import FeedMessage
    from sharedrecord.models import Entry

    entries_before = Entry.objects.count()
    since = timezone.now()
    started = time.perf_counter()
    round_trips = sorted(in_parallel(work, send))
    wait_all_done(since, len(work))
    elapsed = time.perf_counter() - started
    statuses: dict[str, int] = {}
    for status in FeedMessage.objects.filter(received_at__gte=since).values_list(
        "status", flat=True
    ):
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "name": name,
        "messages": len(work),
        "elapsed": elapsed,
        "entries": Entry.objects.count() - entries_before,
        "p50": statistics.median(round_trips),
        "p95": round_trips[int(0.95 * (len(round_trips) - 1))],
        "statuses": statuses,
    }


def main() -> None:
    from sharedrecord.localservices import ensure_database, with_database

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
    from ingestion.demo import synthetic_nhs_number
    from ingestion.hl7v2.convert import convert
    from sharedrecord.models import Organisation, Patient

    Patient.objects.all().delete()
    organisation, _ = Organisation.objects.get_or_create(
        ods_code=ODS,
        defaults={"name": "Bench acute", "kind": "acute", "dsa_start": "2025-01-01"},
    )
    _, token = feed_credential_issue(organisation=organisation, system="bench-hl7")
    env["MLLP_FEED_TOKEN"] = token
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        web_port, mllp_port = a.getsockname()[1], b.getsockname()[1]
    processes = start_processes(env, web_port, mllp_port, queue)
    try:
        wait_listening(web_port)
        wait_listening(mllp_port)
        run = uuid.uuid4().hex[:8]
        # Each set has its own serials (visit, order and local ids) and NHS numbers, so
        # every message creates rows rather than updating another set's.
        numbers = iter(sorted({synthetic_nhs_number(n) for n in range(3 * MESSAGES + 100)}))
        warm = [message(n, run, next(numbers)) for n in range(100_000, 100_008)]
        serials = range(200_000, 200_000 + MESSAGES)
        mllp_messages = [message(n, run, next(numbers)) for n in serials]
        fhir_bundles = [
            json.dumps(convert(message(n, run, next(numbers))).bundle).encode()
            for n in range(400_000, 400_000 + MESSAGES)
        ]
        phase("warm-up", warm, mllp_send(mllp_port))
        base = f"http://127.0.0.1:{web_port}"
        results = [
            phase("MLLP -> HL7 v2 pipeline", mllp_messages, mllp_send(mllp_port)),
            phase("HTTP -> FHIR feed, same content", fhir_bundles, fhir_send(base, token)),
        ]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()

    print(f"machine: {CORES} cores; one mllp_listen process; gunicorn 2 processes x 4 threads; "
          f"Celery: a pool of {CORES} processes per queue (feeds; large messages)")  # fmt: skip
    print(f"messages: {MESSAGES} per path, half ADT^A01 (2 entries), half ORU^R01 "
          f"(12 entries), over {SENDERS} connections, one message in flight each")  # fmt: skip
    for r in results:
        print(f"{r['name']}: {r['messages'] / r['elapsed']:,.1f} messages/s, "
              f"{r['entries'] / r['elapsed']:,.0f} entries/s "
              f"({r['elapsed']:.1f} s to last commit; {r['entries']} entries; {r['statuses']}); "
              f"ACK/receipt round trip p50 {r['p50'] * 1000:.1f} ms, "
              f"p95 {r['p95'] * 1000:.1f} ms")  # fmt: skip
    hl7_rate = results[0]["messages"] / results[0]["elapsed"]
    fhir_rate = results[1]["messages"] / results[1]["elapsed"]
    print(f"ratio HL7 v2 / FHIR for the same content: {hl7_rate / fhir_rate:.2f}")


if __name__ == "__main__":
    main()
