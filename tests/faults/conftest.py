"""The fault suite's production stack, started for real and broken for real.

One stack per session, everything on 127.0.0.1 at spare ports with its files in
one temporary directory: a private PostgreSQL cluster, a private Redis
(configured as production runs the broker), `manage.py migrate`, one GP
practice and its feed token, gunicorn with deploy/gunicorn.conf.py (2
processes), a Celery worker (concurrency 2) and Celery beat, all with
DEBUG=false. Nothing here talks to the machine's own PostgreSQL or Redis.

Beat runs the platform's own schedule, with one change so a test fits in
seconds: the feed sweep runs every SWEEP_SECONDS (60 in production) and
FEED_STUCK_AFTER_SECONDS is low, so a message a dead worker held is taken
again within seconds rather than minutes.

Each test records what it did (faults injected, messages sent, lost,
duplicated, time); the session writes .data/fault-summary.json and prints it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from celery import Celery

from tests.factories import wait_until_listening
from tests.services import (
    BASE_DIR,
    WORKER_QUEUE_SUFFIXES,
    PrivatePostgres,
    RedisServer,
    free_port,
    postgres_bin_dir,
)

SUMMARY_PATH = BASE_DIR / ".data" / "fault-summary.json"
SUMMARY: list[dict[str, Any]] = []
ODS = "ZF001"  # the fault suite's GP practice (made-up Z code, like the demo's)
SWEEP_SECONDS = 2.0
STUCK_AFTER_SECONDS = 5
SHARED_PORTS = {5432, 6379}  # the machine's own servers: never ours to touch
CALL_REPORT = pytest.StashKey[pytest.TestReport]()
TIMING: dict[str, float] = {}
_stack: Stack | None = None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "faults: black-box fault suite: the production stack (gunicorn, Celery, private "
        "PostgreSQL and Redis) with its parts killed and restarted for real",
    )


# ------------------------------------------------------------------ processes


class Process:
    """One server process in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=BASE_DIR, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def group(self) -> list[psutil.Process]:
        """Every live process in this process's group (the leader and what it forked)."""
        if self.proc is None:
            return []
        members = []
        for candidate in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
                if os.getpgid(candidate.pid) == self.proc.pid:
                    members.append(candidate)
        return members

    def kill_hard(self, members: list[psutil.Process]) -> None:
        """SIGKILL the whole group at once, as the OOM killer or a lost host would.

        The group is signalled by the id of its leader, which is ours until it is
        reaped, so the kill lands at once and on nothing else. `members` (from
        group(), taken beforehand so the kill is not delayed) are waited for.
        """
        assert self.proc is not None
        assert self.proc.poll() is None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        psutil.wait_procs(members, timeout=10)

    def stop(self, timeout: float = 15) -> None:
        members = self.group()
        for member in members:
            with contextlib.suppress(psutil.Error):
                member.send_signal(signal.SIGTERM)
        _, left = psutil.wait_procs(members, timeout=timeout)
        for member in left:
            with contextlib.suppress(psutil.Error):
                member.kill()
        psutil.wait_procs(left, timeout=5)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=5)

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


BEAT_MODULE = '''"""Celery beat for the fault suite: the platform's schedule, the feed sweep sooner."""
from sharedrecord.celery import app

schedule = dict(app.conf.beat_schedule)
schedule["feed-sweep"] = {**schedule["feed-sweep"], "schedule": %r}
app.conf.beat_schedule = schedule
'''


class Stack:
    """The platform as production runs it, on private servers under one temporary directory."""

    def __init__(self, root: Path) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("No PostgreSQL server binaries (initdb, pg_ctl) were found.")
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir()
        self.pg = PrivatePostgres(root / "pg", bin_dir=bin_dir)
        self.redis = RedisServer(root / "redis")
        self.web_port = free_port()
        assert not {self.pg.port, self.redis.port, self.web_port} & SHARED_PORTS
        self.queue = f"faults-{uuid.uuid4().hex[:8]}"
        self.database_url = self.pg.url("sharedrecord")
        self.base_url = f"http://127.0.0.1:{self.web_port}"
        self.token = ""
        self.organisation_id = 0
        self.web: Process | None = None
        self.beat: Process | None = None
        self.workers: list[Process] = []
        drop = ("DATABASE_", "REDIS_", "SECRET_KEY", "CELERY_", "GUNICORN_", "FEED_", "DB_POOL_")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        self.env.update(
            DJANGO_SETTINGS_MODULE="sharedrecord.settings",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis.url,
            SECRET_KEY=secrets.token_urlsafe(50),
            DEBUG="false",
            ALLOWED_HOSTS="127.0.0.1",
            CELERY_QUEUE=self.queue,
            FEED_STUCK_AFTER_SECONDS=str(STUCK_AFTER_SECONDS),
            GUNICORN_BIND=f"127.0.0.1:{self.web_port}",
            GUNICORN_WORKERS="2",
            GUNICORN_THREADS="4",
            LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )

    # ---------------------------------------------------------------- start

    def start(self) -> None:
        self.pg.init()
        self.pg.start()
        self.pg.create_database("sharedrecord")
        self.redis.start()
        # Web and worker boot while migrate runs (neither touches the database until
        # asked); /readyz says not ready until every migration is applied.
        self.web = self._process(
            "web",
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
             "sharedrecord.wsgi:application"],
        )  # fmt: skip
        self.start_worker()
        self._manage("migrate", "--no-input", log="migrate")
        beat_dir = self.root / "beat"
        beat_dir.mkdir()
        (beat_dir / "faultbeat.py").write_text(BEAT_MODULE % SWEEP_SECONDS)
        self.beat = self._process(
            "beat",
            [sys.executable, "-m", "celery", "-A", "faultbeat", "beat", "--loglevel", "INFO",
             "--schedule", str(beat_dir / "celerybeat-schedule")],
            extra_env={"PYTHONPATH": os.pathsep.join([str(beat_dir), str(BASE_DIR)])},
        )  # fmt: skip
        self._issue_credential()
        self.wait_ready()

    def _process(
        self, name: str, argv: list[str], extra_env: dict[str, str] | None = None
    ) -> Process:
        process = Process(name, argv, {**self.env, **(extra_env or {})}, self.logs / f"{name}.log")
        process.start()
        return process

    def _manage(self, *args: str, log: str) -> str:
        with (self.logs / f"{log}.log").open("ab") as stderr:
            done = subprocess.run(
                [sys.executable, "manage.py", *args], env=self.env, cwd=BASE_DIR,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, timeout=180,
            )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{tail(self.logs / f'{log}.log')}")
        return done.stdout.decode()

    def _issue_credential(self) -> None:
        """One GP practice with an agreement, then a feed token from the management command."""
        script = (
            "from sharedrecord.models import Organisation\n"
            f"Organisation.objects.get_or_create(ods_code={ODS!r}, defaults={{'name': "
            "'Fault suite practice', 'kind': 'gp-practice', 'dsa_start': '2025-01-01'})\n"
        )
        self._manage("shell", "-c", script, log="setup")
        output = self._manage(
            "feed_credential_issue", "--org", ODS, "--system", "faults", log="setup"
        )
        self.token = output.strip().splitlines()[-1]
        with self.connect() as conn:
            row = conn.execute(
                "SELECT id FROM sharedrecord_organisation WHERE ods_code = %s", [ODS]
            ).fetchone()
        assert row is not None
        self.organisation_id = int(row[0])

    def start_worker(self) -> Process:
        number = len(self.workers) + 1
        worker = self._process(
            f"worker-{number}",
            [sys.executable, "-m", "celery", "-A", "sharedrecord", "worker", "--loglevel", "INFO",
             "--concurrency", "2", "-Q", ",".join(f"{self.queue}{kind}" for kind in WORKER_QUEUE_SUFFIXES), "--hostname", f"faults-{number}@%h"],
        )  # fmt: skip
        self.workers.append(worker)
        return worker

    def start_mllp(self) -> tuple[Process, int]:
        """An MLLP listener for the stack's practice, on a port of its own."""
        port = free_port()
        listener = self._process(
            "mllp", [sys.executable, "manage.py", "mllp_listen", "--port", str(port)],
            extra_env={"MLLP_FEED_TOKEN": self.token},
        )  # fmt: skip
        assert listener.proc is not None
        wait_until_listening(listener.proc, port, "mllp_listen")
        return listener, port

    @property
    def worker(self) -> Process:
        return self.workers[-1]

    # ---------------------------------------------------------------- health

    def wait_ready(self, timeout: float = 90) -> None:
        """Until /readyz says ready and a worker answers a ping through the broker."""
        deadline = time.monotonic() + timeout
        while True:
            for process in [self.web, self.beat, *self.workers[-1:]]:
                if process is not None and not process.alive():
                    raise RuntimeError(f"{process.name} exited:\n{process.tail()}")
            if http_status(f"{self.base_url}/readyz") == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the web server never became ready")
            time.sleep(0.2)
        self.ping_worker(timeout=max(5.0, deadline - time.monotonic()))

    def ping_worker(self, timeout: float) -> None:
        probe = Celery("fault-probe", broker=self.redis.url, backend=self.redis.url,
                       set_as_current=False)  # fmt: skip
        try:
            result = probe.send_task("ingestion.ping", queue=self.queue)
            assert result.get(timeout=timeout) == "pong"
        finally:
            probe.close()

    def supervise(self) -> list[str]:
        """Restart what exited, as the deployment's `restart: unless-stopped` would; its names."""
        restarted = []
        if not self.worker.alive():
            restarted.append(self.worker.name)
            self.start_worker()
        for process in (self.web, self.beat):
            if process is not None and not process.alive():
                restarted.append(process.name)
                process.start()
        return restarted

    def ensure_healthy(self) -> None:
        """Put back whatever an earlier (perhaps failed) test left broken."""
        if not self.pg.running():
            self.pg.start()
        if not self.redis.answers():
            self.redis.start()
        self.supervise()
        self.wait_ready()

    # ---------------------------------------------------------------- the private database

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(sql, params or []).fetchall()

    # ---------------------------------------------------------------- logs

    def logs_text(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.logs.glob("*.log"))
        )

    def tails(self) -> str:
        parts = [f"--- {path.name}\n{tail(path)}" for path in sorted(self.logs.glob("*.log"))]
        parts.append(f"--- postgres.log\n{tail(self.pg.log_path)}")
        parts.append(f"--- redis.log\n{tail(self.redis.log_path, 15)}")
        return "\n".join(parts)

    # ---------------------------------------------------------------- stop

    def stop(self) -> None:
        processes = [p for p in [self.web, self.beat, *self.workers] if p is not None]
        for process in processes:
            with contextlib.suppress(Exception):
                process.stop()
        with contextlib.suppress(Exception):
            self.redis.stop()
        if self.pg.running():
            try:
                self.pg.stop("immediate")
            except (subprocess.SubprocessError, OSError):
                self.pg.kill()


def http_status(url: str, timeout: float = 5) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return 0


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def fault_stack() -> Iterator[Stack]:
    """The production stack on private servers; every process and file is removed afterwards."""
    global _stack
    TIMING["started"] = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="sr-faults-"))
    root.chmod(0o755)  # the postgres OS user must reach its cluster directory
    stack = None
    try:
        stack = Stack(root)
        _stack = stack
        try:
            stack.start()
        except Exception as exc:
            raise RuntimeError(f"the fault stack did not start: {exc}\n{stack.tails()}") from exc
        TIMING["ready"] = time.monotonic()
        yield stack
    finally:
        if stack is not None:
            stack.stop()
        _stack = None
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stack(fault_stack: Stack) -> Stack:
    """The stack, healthy at the start of each test whatever the previous one left."""
    fault_stack.ensure_healthy()
    return fault_stack


@pytest.fixture
def fault_record(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """What a test did, for the summary: faults, messages, deliveries, lost, duplicated."""
    record: dict[str, Any] = {"test": request.node.name, "faults": [], "messages_sent": 0,
                              "deliveries": 0, "lost": None, "duplicated": None}  # fmt: skip
    started = time.monotonic()
    yield record
    TIMING["ended"] = time.monotonic()
    record["seconds"] = round(TIMING["ended"] - started, 1)
    report = request.node.stash.get(CALL_REPORT, None)
    if report is None:
        record["outcome"] = "error"
    elif hasattr(report, "wasxfail"):
        record["outcome"] = "xfailed"
    else:
        record["outcome"] = report.outcome
    SUMMARY.append(record)


# ------------------------------------------------------------------ reporting hooks


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[CALL_REPORT] = report
    if report.failed and _stack is not None and item.get_closest_marker("faults"):
        report.sections.append(("fault stack: the tails of its logs", _stack.tails()))
    return report


def _summary() -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(record.get(key) or 0) for record in SUMMARY)

    return {
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "faults_injected": sum(len(record["faults"]) for record in SUMMARY),
        # Survived: the test ran to its end (an xfail is a known defect in how the
        # platform answered, checked last) and nothing was lost or duplicated.
        "faults_survived": sum(
            len(record["faults"])
            for record in SUMMARY
            if record.get("outcome") in ("passed", "xfailed")
            and record["lost"] == 0
            and record["duplicated"] == 0
        ),
        "messages_sent": total("messages_sent"),
        "deliveries": total("deliveries"),
        "lost": total("lost"),
        "duplicated": total("duplicated"),
        "start_up_seconds": round(TIMING.get("ready", 0) - TIMING.get("started", 0), 1),
        "seconds": round(TIMING.get("ended", 0) - TIMING.get("started", 0), 1),
        "tests": SUMMARY,
    }


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not SUMMARY:
        return
    summary = _summary()
    SUMMARY_PATH.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY_PATH.write_text(json.dumps(summary, indent=2) + "\n")
    write: Callable[[str], None] = terminalreporter.write_line
    terminalreporter.section("fault suite")
    write(
        f"faults injected {summary['faults_injected']} (survived {summary['faults_survived']}), "
        f"messages {summary['messages_sent']}, HTTP deliveries {summary['deliveries']}, "
        f"lost {summary['lost']}, duplicated {summary['duplicated']}, "
        f"{summary['seconds']} s (start-up {summary['start_up_seconds']} s)"
    )
    for record in SUMMARY:
        write(
            f"  {record['test']}: {record.get('outcome')}, {record['seconds']} s, "
            f"faults {record['faults'] or 'none'}, messages {record['messages_sent']}, "
            f"lost {record['lost']}, duplicated {record['duplicated']}"
        )
        for note, value in record.get("notes", {}).items():
            write(f"      {note}: {value}")
        if record.get("known_defect"):
            write(f"      {record['known_defect']}")
    write(f"written to {SUMMARY_PATH.relative_to(BASE_DIR)}")
