"""A real streaming replica serves record reads while fresh; writes and stale reads use the primary.

Starts its own primary and, from it with pg_basebackup, a streaming replica
(PostgreSQL 15 binaries, both under a temporary folder on spare ports), so it
never depends on the machine's own cluster's replication settings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings

from tests.services import BASE_DIR, PrivatePostgres, free_port, postgres_bin_dir

pytestmark = pytest.mark.slow


class Pair:
    """A primary and its streaming replica, and a way to run the platform against them."""

    def __init__(self, root: Path, bin_dir: Path) -> None:
        self.root = root
        self.bin_dir = bin_dir
        self.primary = PrivatePostgres(root / "primary", bin_dir=bin_dir)
        self.replica = PrivatePostgres(root / "replica", bin_dir=bin_dir)

    def start(self) -> None:
        self.primary.init()
        self.primary.start()
        self.primary.create_database("sr")
        self.manage("migrate", "--no-input")
        self.replica.root.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.replica.root, user="postgres", group="postgres")
        # A base backup that streams its WAL, written with a standby.signal and the
        # primary's address (-R), then started on its own port as a hot standby.
        self.replica._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
            "-D", str(self.replica.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        self.replica.start()

    def stop(self) -> None:
        for server in (self.replica, self.primary):
            if server.running():
                try:
                    server.stop("immediate")
                except (subprocess.SubprocessError, OSError, RuntimeError):
                    server.kill()

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.primary.url("sr"),
            "DATABASE_REPLICA_URL": self.replica.url("sr"),
            "REDIS_URL": settings.REDIS_URL,
            "ALLOWED_HOSTS": "testserver",
            "DEBUG": "false",
            "REPLICA_STICKY_SECONDS": "2",
            "LOG_LEVEL": "WARNING",
            **extra,
        }

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args], env=self.env(), cwd=BASE_DIR, check=True,
            stdout=subprocess.DEVNULL, timeout=600,
        )  # fmt: skip

    def probe(self, *args: str, max_lag: int = 3600) -> dict[str, Any]:
        result = subprocess.run(
            [sys.executable, "-m", "tests.replica_probe", *args],
            env=self.env(REPLICA_MAX_LAG_SECONDS=str(max_lag)), cwd=BASE_DIR,
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return dict(json.loads(result.stdout.strip().splitlines()[-1]))

    def on(self, server: PrivatePostgres, sql: str) -> Any:
        with psycopg.connect(server.url("sr"), autocommit=True) as conn:
            row = conn.execute(sql).fetchone()
        return row[0] if row else None

    def wait_caught_up(self) -> None:
        target = self.on(self.primary, "SELECT pg_current_wal_lsn()::text")
        wait_for(
            lambda: self.on(self.replica, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"),
            "the replica to replay the primary's WAL",
        )

    def replica_lag(self) -> float:
        from sharedrecord.dbrouter import LAG_SQL

        with psycopg.connect(self.replica.url("sr"), autocommit=True) as conn:
            row = conn.execute(LAG_SQL).fetchone()
        assert row is not None
        return float(row[1] or 0)


def wait_for(check: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None
    assert (bin_dir / "pg_basebackup").exists(), bin_dir
    root = Path(tempfile.mkdtemp(prefix="sr-replica-"))
    root.chmod(0o755)
    pairs = Pair(root, bin_dir)
    pairs.primary.port, pairs.replica.port = free_port(), free_port()
    try:
        pairs.start()
        yield pairs
    finally:
        pairs.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_reads_use_a_fresh_replica_and_the_primary_when_it_lags(pair: Pair) -> None:
    assert pair.on(pair.replica, "SELECT pg_is_in_recovery()") is True
    built = pair.probe("setup")
    # Read-after-write: the GP just recorded a basis, so this session reads the primary.
    assert (built["status"], built["read_from"]) == (200, "primary")
    pair.wait_caught_up()

    def view(max_lag: int = 3600) -> dict[str, Any]:
        return pair.probe("view", built["patient"], built["session"], max_lag=max_lag)

    def api(max_lag: int = 3600) -> dict[str, Any]:
        return pair.probe("fhir", built["patient"], built["token"], max_lag=max_lag)

    # Once the session's own write is a moment behind it, a fresh replica serves the record.
    seen: dict[str, Any] = {}

    def served_by_replica() -> bool:
        seen.update(view())
        return bool(seen["read_from"] == "replica")

    wait_for(served_by_replica, "the session to leave the primary")
    assert seen["status"] == 200
    before = set(seen["shown"])
    assert before
    # The FHIR read API too.
    api_fresh = api()
    assert (api_fresh["status"], api_fresh["read_from"]) == (200, "replica")
    api_before = set(api_fresh["shown"])
    assert api_before

    # Hold the replica still, then write on the primary: the replica falls behind.
    pair.on(pair.replica, "SELECT pg_wal_replay_pause()")
    try:
        assert pair.probe("write", built["nhs_number"])["status"] == "done"
        # Within the bound (an hour): served by the replica, which has not seen the write.
        stale = view(max_lag=3600)
        assert (stale["status"], stale["read_from"]) == (200, "replica")
        assert set(stale["shown"]) == before
        api_stale = api(max_lag=3600)
        assert (api_stale["read_from"], set(api_stale["shown"])) == ("replica", api_before)
        # Past the bound (one second): the primary serves it, with the new entry.
        wait_for(lambda: pair.replica_lag() > 1, "the replica's lag to pass one second")
        current = view(max_lag=1)
        assert (current["status"], current["read_from"]) == (200, "primary")
        assert set(current["shown"]) > before
        api_current = api(max_lag=1)
        assert api_current["read_from"] == "primary"
        assert set(api_current["shown"]) > api_before
    finally:
        pair.on(pair.replica, "SELECT pg_wal_replay_resume()")
    pair.wait_caught_up()
    caught_up = view(max_lag=1)
    assert (caught_up["read_from"], set(caught_up["shown"])) == ("replica", set(current["shown"]))
