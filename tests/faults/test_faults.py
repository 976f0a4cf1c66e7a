"""No input breaks it: the production stack survives its parts being killed and restarted.

Each test sends real messages over HTTP to gunicorn (DEBUG=false), breaks one
part of the stack for real, and then asks the private database directly
whether anything was lost or duplicated: every accepted message ends `done`,
every person holds exactly the entries sent, no (source, type, id) is stored
twice, and the audit trail says each message was received once and processed
once. The stack itself is in conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from ingestion.mllp import FrameReader, frame
from ingestion.processing import MESSAGE_LOCK_NAMESPACE
from tests.factories import gp_bundle, hl7_message, next_nhs_number
from tests.faults.conftest import ODS, Stack

pytestmark = [pytest.mark.faults]

RUN = uuid.uuid4().hex[:6]
FHIR_JSON = "application/fhir+json"
HL7_ER7 = "x-application/hl7-v2+er7"
FINAL = ("done", "rejected", "failed")
# What a 5xx page must never show under DEBUG=false.
DEBUG_MARKERS = ("Traceback", "DEBUG = True", "django.", 'File "/', "SECRET_KEY")


# ------------------------------------------------------------------ messages


@dataclass(frozen=True)
class Message:
    """One message a partner system sends, and what the record should hold after it."""

    key: str  # the idempotency key: the Bundle id, or hl7v2:<MSH-10>
    nhs_number: str
    entries: int | None  # None for HL7 v2: as many as the converter makes
    body: bytes
    content_type: str = FHIR_JSON
    path: str = "/api/v1/feeds/fhir"


def fhir_message(tag: str, *, observations: int = 0) -> Message:
    """A GP practice's summary Bundle for a new person, with extra results to make it longer."""
    number = next_nhs_number()
    key = f"{RUN}{tag}"
    bundle = gp_bundle(number, key=key, gp_ods=ODS)
    patient = bundle["entry"][0]["fullUrl"]
    for n in range(observations):
        resource_id = f"{key}-glucose-{n}"
        bundle["entry"].append({
            "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'faults/{resource_id}')}",
            "resource": {
                "resourceType": "Observation", "id": resource_id, "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7",
                                     "display": "Glucose"}]},
                "subject": {"reference": patient},
                "effectiveDateTime": f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}T09:00:00Z",
                "valueQuantity": {"value": 4 + n % 5, "unit": "mmol/L"},
            },
        })  # fmt: skip
    bundle["id"] = f"faults-{RUN}-{tag}"
    return Message(bundle["id"], number, len(bundle["entry"]), json.dumps(bundle).encode())


def hl7v2_message(tag: str) -> Message:
    number = next_nhs_number()
    control_id = f"F{RUN}{tag}"
    text = hl7_message(number, control_id=control_id, visit=f"V{RUN}{tag}")
    key = f"hl7v2:{control_id}"
    return Message(key, number, None, text.encode(), HL7_ER7, "/api/v1/feeds/hl7v2")


# ------------------------------------------------------------------ a partner system


@dataclass
class Answer:
    status: int  # 0: no HTTP answer at all (refused, reset or timed out)
    seconds: float
    at: float  # time.monotonic() when the request started
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def location(self) -> str:
        return self.headers.get("Content-Location", "")

    def json(self) -> Any:
        return json.loads(self.body)


class Partner:
    """Sends as an integration engine does: waits for the answer, retries what is retryable."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        content_type: str = FHIR_JSON,
        token: str | None = None,
        cookie: str = "",
        timeout: float = 30,
    ) -> Answer:
        token = self.stack.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if cookie:
            headers["Cookie"] = cookie
        if body is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(
            self.stack.base_url + path, data=body, method=method, headers=headers
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, answer_headers, data = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, answer_headers, data = error.code, error.headers, error.read()
        except (OSError, ValueError):
            return Answer(0, time.monotonic() - started, started)
        return Answer(status, time.monotonic() - started, started, dict(answer_headers), data)

    def send(self, message: Message, timeout: float = 30) -> Answer:
        return self.request(
            "POST", message.path, message.body, content_type=message.content_type, timeout=timeout
        )

    def deliver(self, message: Message, *, until: float) -> list[Answer]:
        """Send until the message is taken (202, or an HL7 ACK): every attempt, in order.

        A 4xx would tell a real sender to give up, so it stops here too (and the
        test then finds the message missing).
        """
        attempts: list[Answer] = []
        while True:
            answer = self.send(message)
            attempts.append(answer)
            if answer.status in (200, 202) or 400 <= answer.status < 500:
                return attempts
            if time.monotonic() > until:
                return attempts
            time.sleep(0.5)

    def follow(self, location: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.request("GET", location)
            receipt = answer.json() if answer.status == 200 else {"status": f"HTTP {answer.status}"}
            if receipt["status"] in ("done", "rejected"):
                return dict(receipt)
            assert time.monotonic() < deadline, (
                f"receipt still {receipt['status']} after {timeout}s"
            )
            time.sleep(0.2)


def send_all(partner: Partner, messages: list[Message], threads: int = 4) -> list[Answer]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(partner.send, messages))


def deliver_all(partner: Partner, messages: list[Message], until: float) -> list[list[Answer]]:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda m: partner.deliver(m, until=until), messages))


# ------------------------------------------------------------------ the ledger


def wait_finished(
    stack: Stack, messages: list[Message], timeout: float, restarted: list[str] | None = None
) -> None:
    """Until every message is stored and finished (done, rejected or failed).

    Meanwhile a process that exited is restarted, as production's supervisor
    would, and named in `restarted` (a platform process should not exit).
    """
    keys = [m.key for m in messages]
    deadline = time.monotonic() + timeout
    statuses: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        if restarted is not None:
            restarted.extend(stack.supervise())
        try:
            statuses = stack.query(
                "SELECT status, count(*) FROM ingestion_feedmessage "
                "WHERE organisation_id = %s AND idempotency_key = ANY(%s) GROUP BY status",
                [stack.organisation_id, keys],
            )
        except psycopg.OperationalError:
            statuses = []
        if sum(n for status, n in statuses if status in FINAL) == len(keys):
            return
        time.sleep(0.25)
    raise AssertionError(f"not finished after {timeout}s: {dict(statuses)} of {len(keys)}")


@dataclass
class Tally:
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)
    attempts: Counter[int] = field(default_factory=Counter)


def tally(stack: Stack, messages: list[Message]) -> Tally:
    """Lost and duplicated, message by message, from the private database."""
    result = Tally()
    keys = [m.key for m in messages]
    stored: dict[str, list[tuple[Any, ...]]] = {}
    for row in stack.query(
        "SELECT idempotency_key, status, entry_count, counts, public_id::text, attempts "
        "FROM ingestion_feedmessage WHERE organisation_id = %s AND idempotency_key = ANY(%s)",
        [stack.organisation_id, keys],
    ):
        stored.setdefault(row[0], []).append(row)
    held = {
        number: (rows, distinct)
        for number, rows, distinct in stack.query(
            "SELECT p.nhs_number, count(*), count(DISTINCT (e.resource_type, e.source_id)) "
            "FROM sharedrecord_entry e JOIN sharedrecord_patient p ON p.id = e.patient_id "
            "WHERE e.source_org_id = %s AND p.nhs_number = ANY(%s) GROUP BY 1",
            [stack.organisation_id, [m.nhs_number for m in messages]],
        )
    }
    ids = [row[4] for rows in stored.values() for row in rows]
    audited = {
        (action, message): n
        for action, message, n in stack.query(
            "SELECT action, detail->>'message', count(*) FROM audit_event "
            "WHERE action IN ('feed-received', 'feed-processed') AND detail->>'message' = ANY(%s) "
            "GROUP BY 1, 2",
            [ids],
        )
    }
    for message in messages:
        rows = stored.get(message.key, [])
        if not rows:
            result.lost += 1
            result.problems.append(f"{message.key}: never stored")
            continue
        result.duplicated += len(rows) - 1
        _, status, entry_count, counts, public_id, attempts = rows[0]
        result.attempts[attempts] += 1
        expected = message.entries if message.entries is not None else entry_count
        entries, distinct = held.get(message.nhs_number, (0, 0))
        if status != "done" or entries < expected:
            result.lost += 1
            result.problems.append(f"{message.key}: {status}, {entries} of {expected} entries")
        result.duplicated += entries - distinct
        if counts.get("created") != expected or entry_count != expected:
            result.problems.append(f"{message.key}: counts {counts}, {expected} entries sent")
        for action in ("feed-received", "feed-processed"):
            times = audited.get((action, public_id), 0)
            result.duplicated += max(0, times - 1)
            if times != 1:
                result.problems.append(f"{message.key}: {action} audited {times} times")
    doubled = stack.query(
        "SELECT count(*) FROM (SELECT 1 FROM sharedrecord_entry "
        "GROUP BY source_org_id, resource_type, source_id HAVING count(*) > 1) d"
    )[0][0]
    if doubled:
        result.duplicated += doubled
        result.problems.append(f"{doubled} source keys stored more than once")
    return result


def assert_nothing_lost_or_duplicated(
    stack: Stack, messages: list[Message], record: dict[str, Any]
) -> Tally:
    result = tally(stack, messages)
    record.update(messages_sent=len(messages), lost=result.lost, duplicated=result.duplicated)
    assert (result.lost, result.duplicated, result.problems) == (0, 0, [])
    numbers = [m.nhs_number for m in messages]
    logged = [number for number in numbers if number in stack.logs_text()]
    assert not logged, "NHS numbers appear in the web, worker or beat logs"
    return result


# Messages a worker holds mid-transaction: their processing lock is granted, and the
# session is not already committing (the lock lasts through the commit's WAL flush,
# and a commit the server has begun completes whatever happens to the worker).
HELD = (
    "SELECT l.objid::bigint FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid AND l.objsubid = 2 "
    "AND NOT (a.state = 'active' AND a.query ILIKE 'COMMIT%%')"
)


def wait_processing(stack: Stack, messages: list[Message], *, done_first: int = 0) -> list[int]:
    """Until a worker is mid-message, after `done_first` of these are done; the ids it holds.

    One session polls, so the caller can strike within milliseconds of the answer.
    """
    keys = [m.key for m in messages]
    deadline = time.monotonic() + 60
    with stack.connect() as conn:
        while time.monotonic() < deadline:
            held = [int(row[0]) for row in conn.execute(HELD, [MESSAGE_LOCK_NAMESPACE])]
            if held and done_first:
                done = conn.execute(
                    "SELECT count(*) FROM ingestion_feedmessage WHERE organisation_id = %s "
                    "AND idempotency_key = ANY(%s) AND status = 'done'",
                    [stack.organisation_id, keys],
                ).fetchone()
                held = held if done is not None and done[0] >= done_first else []
            if held:
                return held
            time.sleep(0.005)
    raise AssertionError("no worker ever started processing")


# Messages whose worker waits on the holder's table lock: certainly mid-transaction.
WAITING = (
    "SELECT l.objid::bigint FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid AND l.objsubid = 2 "
    "AND %s::integer = ANY(pg_blocking_pids(a.pid))"
)


@contextlib.contextmanager
def held_mid_message(
    stack: Stack, messages: list[Message], *, done_first: int
) -> Iterator[list[int]]:
    """Once `done_first` of these are done, hold the workers inside a message; the ids held.

    A session takes the entries table in SHARE mode, so the next message a worker
    takes waits at its first write with its transaction open, until the session ends
    (on leaving the block, or when a fast stop of PostgreSQL ends it first). Without
    it a message of hundreds of entries still commits, at times, in the instant
    between being seen mid-message and the strike.
    """
    deadline = time.monotonic() + 60
    while done_count(stack, messages) < done_first:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {done_first} of {len(messages)} messages were done")
        time.sleep(0.01)
    holder = stack.connect()
    try:
        holder.execute("SET lock_timeout = '30s'")  # behind a message still committing
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE sharedrecord_entry IN SHARE MODE")
        deadline = time.monotonic() + 60
        with stack.connect() as conn:
            held: list[int] = []
            while not held:
                if time.monotonic() > deadline:
                    raise AssertionError("no worker took a message while the table was held")
                time.sleep(0.01)
                rows = conn.execute(WAITING, [MESSAGE_LOCK_NAMESPACE, holder.info.backend_pid])
                held = [int(row[0]) for row in rows]
        yield held
    finally:
        with contextlib.suppress(psycopg.Error):
            holder.close()


def done_count(stack: Stack, messages: list[Message]) -> int:
    rows = stack.query(
        "SELECT count(*) FROM ingestion_feedmessage WHERE organisation_id = %s "
        "AND idempotency_key = ANY(%s) AND status = 'done'",
        [stack.organisation_id, [m.key for m in messages]],
    )
    return int(rows[0][0])


def status_of(stack: Stack, ids: list[int]) -> dict[int, tuple[str, int]]:
    rows = stack.query(
        "SELECT id, status, attempts FROM ingestion_feedmessage WHERE id = ANY(%s)", [ids]
    )
    return {int(pk): (status, int(attempts)) for pk, status, attempts in rows}


def statuses(answers: list[Answer]) -> dict[str, int]:
    return dict(Counter(str(a.status) for a in answers))


# ------------------------------------------------------------------ 1. end to end, DEBUG=false


def test_it_runs_end_to_end_behind_gunicorn_with_debug_off(
    stack: Stack, fault_record: dict[str, Any]
) -> None:
    partner = Partner(stack)
    bundles = [fhir_message(f"e2e{n}") for n in range(4)]
    hl7 = hl7v2_message("e2e")
    answers = send_all(partner, bundles)
    fault_record["deliveries"] = len(answers) + 1
    assert [a.status for a in answers] == [202] * len(bundles)
    assert all(a.location.startswith("/api/v1/feeds/receipts/") for a in answers)
    ack = partner.send(hl7)
    assert ack.status == 200
    assert f"MSA|AA|{hl7.key.removeprefix('hl7v2:')}".encode() in ack.body

    # The receipts, followed over HTTP as a partner system would.
    for message, answer in zip(bundles, answers, strict=True):
        receipt = partner.follow(answer.location, timeout=60)
        assert receipt["status"] == "done"
        assert receipt["counts"]["created"] == message.entries
    wait_finished(stack, [hl7], timeout=60)
    assert_nothing_lost_or_duplicated(stack, [*bundles, hl7], fault_record)

    # Liveness and readiness, as the orchestrator asks.
    health = partner.request("GET", "/healthz", token="")
    ready = partner.request("GET", "/readyz", token="")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    assert ready.status == 200
    assert ready.json() == {
        "status": "ready", "checks": {"database": True, "migrations": True, "redis": True}
    }  # fmt: skip

    # Error answers under DEBUG=false: no traceback, no settings, no personal data.
    number = bundles[0].nhs_number
    missing = partner.request("GET", f"/no-such-page/{number}", token="")
    assert missing.status == 404
    broken = partner.send(
        Message("broken", number, 0, bundles[0].body[: len(bundles[0].body) // 2])
    )
    assert broken.status == 400
    assert broken.json()["resourceType"] == "OperationOutcome"
    stranger = partner.request("POST", "/api/v1/feeds/fhir", bundles[1].body, token="not-a-token")
    assert stranger.status == 401
    unknown = partner.request("GET", f"/api/v1/feeds/receipts/{uuid.uuid4()}")
    assert unknown.status == 404
    for answer in (missing, broken, stranger, unknown):
        text = answer.body.decode(errors="replace")
        assert not [marker for marker in DEBUG_MARKERS if marker in text], text[:500]
        assert number not in text
        assert "ellison" not in text.lower()
    fault_record["notes"] = {"error answers": statuses([missing, broken, stranger, unknown])}


# ------------------------------------------------------------------ 2. worker SIGKILL


def test_a_worker_killed_mid_message_loses_and_doubles_nothing(
    stack: Stack, fault_record: dict[str, Any]
) -> None:
    partner = Partner(stack)
    messages = [fhir_message(f"kill{n}", observations=240) for n in range(30)]
    answers = send_all(partner, messages)
    fault_record["deliveries"] = len(answers)
    assert [a.status for a in answers] == [202] * len(messages)

    members = stack.worker.group()  # the worker and its pool processes
    with held_mid_message(stack, messages, done_first=2) as held:
        stack.worker.kill_hard(members)
    fault_record["faults"] = ["worker process group SIGKILLed mid-message"]
    notes: dict[str, Any] = {
        "processes killed": len(members),
        "messages mid-transaction when killed": len(held),
        "done before the kill": done_count(stack, messages),
    }
    fault_record["notes"] = notes

    started = time.monotonic()
    stack.start_worker()
    wait_finished(stack, messages, timeout=90)
    recovered = time.monotonic() - started
    notes["seconds from new worker to all done"] = round(recovered, 1)
    result = assert_nothing_lost_or_duplicated(stack, messages, fault_record)
    # Each message the kill cut was taken again.
    after = status_of(stack, held)
    assert sorted(after) == sorted(held), after
    assert all(attempts >= 2 for _, attempts in after.values()), after
    notes["attempts per message"] = dict(sorted(result.attempts.items()))


# ------------------------------------------------------------------ 3. Redis restarted


def test_a_redis_restart_mid_stream_loses_and_doubles_nothing(
    stack: Stack, fault_record: dict[str, Any]
) -> None:
    partner = Partner(stack)
    messages = [fhir_message(f"redis{n}", observations=10) for n in range(18)]
    before, during, after = messages[:6], messages[6:12], messages[12:]
    answers = send_all(partner, before)
    assert [a.status for a in answers] == [202] * len(before)

    wait_processing(stack, before, done_first=1)
    done_before = done_count(stack, before)
    stack.redis.stop()  # SIGTERM, mid-stream: a worker holds a message, more are queued
    down_at = time.monotonic()
    fault_record["faults"] = ["Redis (broker and result backend) stopped with SIGTERM, restarted"]
    ready_down = partner.request("GET", "/readyz", token="", timeout=15)
    first_during = send_all(partner, during)
    time.sleep(max(0.0, 3 - (time.monotonic() - down_at)))
    stack.redis.start()  # the same port, the same append-only file
    down_for = time.monotonic() - down_at

    until = time.monotonic() + 60
    retried = [
        [a] if a.status in (200, 202) else [a, *partner.deliver(m, until=until)]
        for m, a in zip(during, first_during, strict=True)
    ]
    later = deliver_all(partner, after, until)
    fault_record["deliveries"] = len(answers) + sum(len(r) for r in [*retried, *later])
    slowest = max(a.seconds for a in first_during)
    first_after = [r[0] for r in later]
    fault_record["notes"] = {
        "Redis down for seconds": round(down_for, 1),
        "messages done when Redis stopped": f"{done_before} of {len(before)} sent",
        "/readyz while down": ready_down.status,
        "first answers while down": statuses(first_during),
        "slowest answer while down, seconds": round(slowest, 2),
        "first answers after restart": statuses(first_after),
    }
    taken = [200 if m.content_type == HL7_ER7 else 202 for m in [*during, *after]]
    assert [r[-1].status for r in [*retried, *later]] == taken
    restarted: list[str] = []
    wait_finished(stack, messages, timeout=90, restarted=restarted)
    fault_record["notes"]["exited, restarted by the supervisor"] = restarted
    assert_nothing_lost_or_duplicated(stack, messages, fault_record)
    ready_again = partner.request("GET", "/readyz", token="")
    assert ready_down.status == 503
    assert ready_again.status == 200

    # The message is committed before the answer, so with the broker down the answer
    # is still a quick 202, and the sweep queues the message once Redis is back.
    assert all(a.status == 202 and a.seconds < 5 for a in [*first_during, *first_after]), (
        f"feed POST with the broker down: {statuses(first_during)} while Redis was down "
        f"(slowest {slowest:.1f}s), {statuses(first_after)} just after; expected quick 202s"
    )
    # Checked last, so every check above holds whatever this says. Celery 5.7/kombu 5.7
    # sometimes end the worker process when Redis goes away while it holds unacknowledged
    # messages (restoring them on the dead connection raises AttributeError in kombu's
    # redis transport); the deployment's restart policy brings it back, as the test did.
    if restarted:
        fault_record["known_defect"] = (
            f"KNOWN DEFECT (Celery/kombu): {', '.join(restarted)} exited when Redis went "
            "away and was restarted as the deployment's restart policy would. Nothing lost."
        )
        pytest.xfail(fault_record["known_defect"])


# ------------------------------------------------------------------ 4. PostgreSQL restarted


def test_a_postgres_restart_mid_ingest_loses_and_doubles_nothing(
    stack: Stack, fault_record: dict[str, Any]
) -> None:
    partner = Partner(stack)
    mllp, mllp_port = stack.start_mllp()  # before the messages: it takes seconds to start
    by_mllp = hl7v2_message("pgmllp")
    messages = [fhir_message(f"pg{n}", observations=200) for n in range(16)]
    messages.insert(13, hl7v2_message("pgdown"))
    before, during, after = messages[:10], messages[10:14], messages[14:]
    answers = send_all(partner, before)
    assert [a.status for a in answers] == [202] * len(before)

    with held_mid_message(stack, before, done_first=1) as held:
        down_at = time.monotonic()
        stack.pg.stop("fast")  # the first half of `pg_ctl restart -m fast`, held down a while
    fault_record["faults"] = ["PostgreSQL stopped (fast: sessions killed) mid-ingest, restarted"]
    with ThreadPoolExecutor(4) as pool:
        ready_job = pool.submit(partner.request, "GET", "/readyz", token="", timeout=30)
        # A reader too: the FHIR API checks its token, a page its session, in the database.
        fhir_job = pool.submit(partner.request, "GET", "/fhir/R4/Patient", token="expired")
        # Two gunicorn workers each wait up to DB_POOL_TIMEOUT_SECONDS on the pool, so the
        # page may queue behind two waits and its own; PostgreSQL stays down until it answers.
        page_job = pool.submit(
            partner.request, "GET", "/search", cookie=f"sessionid={'s' * 32}", timeout=90
        )
        mllp_sender = socket.create_connection(("127.0.0.1", mllp_port))
        mllp_job = pool.submit(mllp_send, mllp_sender, by_mllp)
        first_during = list(pool.map(lambda m: partner.send(m, timeout=30), during))
        ready_down = ready_job.result()
        fhir_down, page_down, mllp_down = fhir_job.result(), page_job.result(), mllp_job.result()
    time.sleep(max(0.0, 3 - (time.monotonic() - down_at)))
    stack.pg.start()
    down_for = time.monotonic() - down_at
    # The listener kept the connection open; the same message, sent again, is taken.
    mllp_again = mllp_send(mllp_sender, by_mllp, until=time.monotonic() + 60)
    mllp_sender.close()
    mllp.stop()
    messages.append(by_mllp)

    until = time.monotonic() + 60
    retried = [
        [a] if a.status in (200, 202) else [a, *partner.deliver(m, until=until)]
        for m, a in zip(during, first_during, strict=True)
    ]
    later = deliver_all(partner, after, until)
    every = [*answers, *(a for r in [*retried, *later] for a in r)]
    fault_record["deliveries"] = len(every)
    notes = {
        "PostgreSQL down for seconds": round(down_for, 1),
        "/readyz while down": f"{ready_down.status} in {ready_down.seconds:.1f}s",
        "first answers while down": statuses(first_during),
        "slowest answer while down, seconds": round(max(a.seconds for a in first_during), 2),
        "answers after restart (with retries)": statuses(
            [a for r in [*retried, *later] for a in r if a.at > down_at + down_for]
        ),
        "5xx content types": sorted(
            {a.headers.get("Content-Type", "") for a in every if a.status >= 500}
        ),
    }
    fault_record["notes"] = notes
    taken = [200 if m.content_type == HL7_ER7 else 202 for m in [*during, *after]]
    assert [r[-1].status for r in [*retried, *later]] == taken
    restarted: list[str] = []
    wait_finished(stack, messages, timeout=120, restarted=restarted)
    notes["exited, restarted by the supervisor"] = restarted
    assert_nothing_lost_or_duplicated(stack, messages, fault_record)
    # Each message whose transaction the shutdown cut was taken again.
    cut = [pk for pk, (_, attempts) in status_of(stack, held).items() if attempts >= 2]
    notes["messages mid-transaction when stopped (retried)"] = len(cut)
    assert sorted(cut) == sorted(held), status_of(stack, held)
    assert not restarted, f"{restarted} exited when PostgreSQL restarted"

    # While it is down a sender is told, in its own protocol, to send again later:
    # a 503 with Retry-After, an OperationOutcome (transient) or an HL7 AR ACK.
    assert 503 in [a.status for a in first_during], statuses(first_during)
    for message, answer in zip(during, first_during, strict=True):
        if answer.status == 503:
            assert_told_to_retry(message, answer)
    assert not [a.status for a in every if a.status >= 500 and a.status != 503]
    assert fhir_down.status == 503, fhir_down
    assert_told_to_retry(Message("", "", 0, b""), fhir_down)
    assert page_down.status == 503, page_down
    assert "not available just now" in page_down.body.decode()
    assert page_down.headers.get("Retry-After"), page_down.headers
    assert "MSA|AR|" in mllp_down, mllp_down
    assert "nothing was kept" in mllp_down, mllp_down
    assert "MSA|AA|" in mllp_again, mllp_again

    # Nothing a sender was told may make it give up on a message, and no error page
    # under DEBUG=false shows a traceback or the message's content.
    assert not [a.status for a in every if 400 <= a.status < 500]
    for answer in every:
        text = answer.body.decode(errors="replace")
        assert not [marker for marker in DEBUG_MARKERS if marker in text], text[:500]
        assert not [m.nhs_number for m in messages if m.nhs_number in text]


def mllp_send(sock: socket.socket, message: Message, until: float = 0) -> str:
    """Send one framed message and read its ACK; until `until`, send again after an AR."""
    reader = FrameReader(1_000_000)
    sock.settimeout(30)
    while True:
        sock.sendall(frame(message.body))
        acks: list[str] = []
        while not acks:
            data = sock.recv(65536)
            assert data, "the MLLP listener closed the connection"
            acks = [f.payload.decode() for f in reader.feed(data)]
        if "MSA|AR|" not in acks[0] or time.monotonic() > until:
            return acks[0]
        time.sleep(0.5)


def assert_told_to_retry(message: Message, answer: Answer) -> None:
    headers = {name.lower(): value for name, value in answer.headers.items()}
    assert int(headers.get("retry-after", "0")) > 0, headers
    if message.content_type == HL7_ER7:
        assert headers["content-type"].startswith("x-application/hl7-v2+er7"), headers
        assert b"MSA|AR|" in answer.body, answer.body[:300]
    else:
        assert headers["content-type"].startswith(FHIR_JSON), headers
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome", outcome
        assert [issue["code"] for issue in outcome["issue"]] == ["transient"], outcome


# ------------------------------------------------------------------ 5. duplicate delivery


def test_five_concurrent_deliveries_of_each_message_make_one_set_of_rows(
    stack: Stack, fault_record: dict[str, Any]
) -> None:
    partner = Partner(stack)
    messages = [fhir_message(f"dup{n}") for n in range(20)]
    copies = [m for m in messages for _ in range(5)]  # each message's copies side by side
    answers = send_all(partner, copies, threads=10)
    fault_record["deliveries"] = len(answers)
    fault_record["faults"] = ["every message delivered 5 times, concurrently"]
    assert Counter(a.status for a in answers) == {202: len(copies)}
    receipts: dict[str, set[str]] = {}
    for message, answer in zip(copies, answers, strict=True):
        receipts.setdefault(message.key, set()).add(answer.json()["id"])
        assert answer.location.endswith(answer.json()["id"])
    assert {key: len(ids) for key, ids in receipts.items()} == {m.key: 1 for m in messages}
    wait_finished(stack, messages, timeout=90)
    assert_nothing_lost_or_duplicated(stack, messages, fault_record)
