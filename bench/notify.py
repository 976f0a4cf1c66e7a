"""Notifications benchmark: event to delivered notification while ingest runs at full speed,
and ingest throughput with subscriptions active against without.

Run (one heavy run at a time on a shared machine):
  flock /tmp/heavy.lock .venv/bin/python -m sharedrecord.localservices exec -- \
      .venv/bin/python bench/notify.py

Steps:
1. A private database (sharedrecord_bench_notify), migrated; a real web server
   (gunicorn) and the deployed Celery worker layout on a private queue; a real
   HTTP receiver in this process.
2. Each person is first registered with the GP practice by the practice's own
   feed (not timed), so the practice is told of every event.
3. Without subscriptions: post BENCH_BUNDLES hospital Bundles of 100 entries
   (a Patient, 93 mixed entries and, as they happen, an admission, a result and
   its abnormal Observation, a document, a care plan and an alert: 5 events a
   Bundle) and time first POST to last commit.
4. With subscriptions: the practice's partner system holds one active
   subscription per topic (id-only, to the receiver); the same for new people.
   Every notification's delay is its arrival at the receiver less its event's
   recording (inside the ingest transaction).
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
BUNDLES = int(os.environ.get("BENCH_BUNDLES", "60"))
CORES = os.cpu_count() or 2
NOW = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
V3 = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

arrivals: list[tuple[str, int, float]] = []  # (subscription id, event number, arrival time)
arrivals_lock = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        at = time.time()
        bundle = json.loads(body)
        params = bundle["entry"][0]["resource"]["parameter"]
        numbers = [int(p["part"][0]["valueString"]) for p in params
                   if p["name"] == "notification-event"]  # fmt: skip
        with arrivals_lock:
            for number in numbers:
                arrivals.append((self.headers["X-Subscription-Id"], number, at))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def hospital_bundle(serial: int, run: str, number_from: int) -> dict[str, Any]:
    from ingest import mixed_builder  # bench/ingest.py: the same entries its Bundles carry

    builder = mixed_builder(serial, ods="ZAC01", key=f"n{number_from}-{serial}", tag=f"{run}{serial}",
                            number_from=number_from)  # fmt: skip
    builder.entries = builder.entries[:94]
    builder.add("Encounter", {"status": "in-progress", "class": {"system": V3, "code": "IMP"},
                              "period": {"start": NOW}})  # fmt: skip
    builder.add("Observation", {
        "status": "final", "code": {"text": "Potassium"}, "effectiveDateTime": NOW,
        "valueQuantity": {"value": 6.4, "unit": "mmol/L"},
        "interpretation": [{"coding": [{"code": "H", "system":
            "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"}]}],
    })  # fmt: skip
    builder.add("DiagnosticReport", {"status": "final", "code": {"text": "U&E"},
                                     "effectiveDateTime": NOW})  # fmt: skip
    builder.add("DocumentReference", {"status": "current", "date": NOW, "content": [
        {"attachment": {"contentType": "text/plain", "data": "U3VtbWFyeQ=="}}]})  # fmt: skip
    builder.add("CarePlan", {"status": "active", "intent": "plan", "period": {"start": NOW}})
    builder.add("Flag", {"status": "active", "code": {"text": "Falls"}, "period": {"start": NOW}})
    bundle = builder.bundle()
    bundle["id"] = f"{run}-h-{number_from}-{serial}"
    return bundle


def practice_bundle(hospital: dict[str, Any], run: str, serial: int) -> dict[str, Any]:
    patient = json.loads(json.dumps(hospital["entry"][0]))
    patient["resource"]["id"] = f"gp-{run}-{serial}"
    # The practice's own claim to the person (its feed names itself): the registration.
    patient["resource"]["generalPractitioner"] = [
        {
            "identifier": {
                "system": "https://fhir.nhs.uk/Id/ods-organization-code",
                "value": "Z81001",
            }
        }
    ]
    return {"resourceType": "Bundle", "id": f"{run}-g-{serial}", "type": "transaction",
            "entry": [patient]}  # fmt: skip


def main() -> None:
    from ingest import SENDERS, post, run_batch  # bench/ingest.py: the same feed client

    from sharedrecord.localservices import celery_workers, ensure_database, with_database

    database = with_database(
        os.environ["DATABASE_URL"], os.environ.get("BENCH_DATABASE", "sharedrecord_bench_notify")
    )
    ensure_database(database)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": database, "CELERY_QUEUE": queue, "DEBUG": "false",
           "SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false",
           "NOTIFY_ALLOW_HTTP": "true"}  # fmt: skip
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from ingestion.credentials import feed_credential_issue
    from sharedrecord.clients import api_client_register
    from sharedrecord.models import Organisation, Patient, User
    from sharedrecord.notifications.models import Delivery, Event, EventKind, Subscription

    Patient.objects.all().delete()
    Subscription.objects.all().delete()
    acute, _ = Organisation.objects.get_or_create(
        ods_code="ZAC01", defaults={"name": "Bench acute", "kind": "acute", "dsa_start": "2025-01-01"})  # fmt: skip
    practice, _ = Organisation.objects.get_or_create(
        ods_code="Z81001", defaults={"name": "Bench practice", "kind": "gp-practice",
                                     "dsa_start": "2025-01-01"})  # fmt: skip
    _, acute_token = feed_credential_issue(organisation=acute, system="bench")
    _, gp_token = feed_credential_issue(organisation=practice, system="bench")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/hook"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    python = sys.executable
    web = subprocess.Popen(
        [python, "-m", "gunicorn", "sharedrecord.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--threads", "4", "--worker-class", "gthread", "--log-level", "warning"],
        env=env, cwd=BASE_DIR,
    )  # fmt: skip
    workers = [subprocess.Popen(c, env=env, cwd=BASE_DIR)
               for c in celery_workers(python, queue=queue, loglevel="WARNING")]  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        run = uuid.uuid4().hex[:6]

        def phase(number_from: int) -> tuple[float, int, dict[str, int]]:
            hospital = [hospital_bundle(i, run, number_from) for i in range(BUNDLES)]
            run_batch(base, gp_token, [practice_bundle(b, f"{run}{number_from}", i)
                                       for i, b in enumerate(hospital)])  # fmt: skip
            elapsed, _, counts = run_batch(base, acute_token, hospital)
            return elapsed, sum(len(b["entry"]) for b in hospital), counts

        post(base, acute_token, hospital_bundle(9999, run, 90_000))  # warm up
        without_s, entries, without_counts = phase(20_000)
        issued = api_client_register(name="Bench GP system", grant="client-credentials",
                                     organisation=practice, role="gp")  # fmt: skip
        from oauth2_provider.models import Application

        owner = User.objects.get(pk=Application.objects.get(client_id=issued.client_id).user_id)
        for kind in EventKind.values:
            Subscription.objects.create(
                owner=owner, organisation=practice, client_id=issued.client_id, kind=kind,
                endpoint=endpoint, content="id-only", secret=uuid.uuid4().hex, status="active",
                created_at=timezone.now(),
            )  # fmt: skip
        Event.objects.filter(dispatched_at=None).update(dispatched_at=timezone.now())
        started = timezone.now()
        with_s, _, with_counts = phase(40_000)
        deadline = time.monotonic() + 300
        while Delivery.objects.filter(state="pending").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        recorded = {
            (str(sub), number): at.timestamp()
            for sub, number, at in Delivery.objects.filter(event__recorded_at__gte=started)
            .values_list("subscription__public_id", "event_number", "event__recorded_at")
        }  # fmt: skip
        delays = sorted(at - recorded[(sub, n)] for sub, n, at in arrivals if (sub, n) in recorded)
        expected = Delivery.objects.count()
    finally:
        for process in (web, *workers):
            process.terminate()
        for process in (web, *workers):
            process.wait()
        server.shutdown()

    print(f"machine: {CORES} cores; web: gunicorn 2 x 4 threads; Celery: the deployed layout "
          f"({CORES} processes per queue); receiver: a threaded HTTP server in this process")  # fmt: skip
    print(f"bundles: {BUNDLES} x 100 entries (5 events each), over {SENDERS} connection(s)")
    print(f"ingest without subscriptions: {entries / without_s:,.0f} entries/s ({without_s:.1f} s, "
          f"created {without_counts.get('created', 0)})")  # fmt: skip
    print(f"ingest with {len(EventKind.values)} subscriptions active: {entries / with_s:,.0f} "
          f"entries/s ({with_s:.1f} s, created {with_counts.get('created', 0)})")  # fmt: skip
    print(f"throughput with / without: {without_s / with_s:.1%}")
    if delays:
        p50 = statistics.median(delays)
        p95 = delays[int(0.95 * (len(delays) - 1))]
        print(f"event to delivered notification: {len(delays)} of {expected} delivered; "
              f"p50 {p50:.2f} s, p95 {p95:.2f} s, max {delays[-1]:.2f} s")  # fmt: skip
    else:
        print(f"event to delivered notification: none of {expected} arrived")


if __name__ == "__main__":
    main()
