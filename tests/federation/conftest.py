"""Region A: a second deployment of this platform, started for real beside the tests (issue 25).

Its own database (on the machine's PostgreSQL, dropped at the end), its own
private Redis, gunicorn on a spare port and its own Celery worker on a queue
of its own, all with DEBUG=false. It is seeded as its operators would:
`manage.py migrate`, organisations, a feed credential and a read API client
for the neighbouring region (`api_client_register`), then feeds over HTTP
that its worker processes. Region B is the test process (its live_server).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.factories import gp_bundle, next_nhs_number, wait_until_listening
from tests.services import BASE_DIR, RedisServer, free_port

A_PRACTICE = "ZRA01"  # region A's GP practice, which feeds region A
B_HOSPITAL = "ZRB01"  # region B's hospital: a neighbour with read access to region A

SEED = """
import json, datetime
from ingestion.credentials import feed_credential_issue
from sharedrecord.clients import api_client_register
from sharedrecord.models import Organisation
start = datetime.date(2025, 1, 1)
practice, _ = Organisation.objects.get_or_create(ods_code="ZRA01", defaults=dict(
    name="Region A Moorside Practice", kind="gp-practice", dsa_start=start))
neighbour, _ = Organisation.objects.get_or_create(ods_code="ZRB01", defaults=dict(
    name="Region B General Hospital", kind="acute", dsa_start=start))
_, token = feed_credential_issue(organisation=practice, system="GP system")
issued = api_client_register(name="Region B shared care record", grant="client-credentials",
    organisation=neighbour, role="clinical-practitioner")
print(json.dumps({"feed_token": token, "client_id": issued.client_id,
                  "client_secret": issued.client_secret}))
"""

OPT_OUT = """
from optout.models import OptOutRoute
from optout.services import optout_register
from sharedrecord.models import Organisation
optout_register(nhs_number="{nhs}", practice=Organisation.objects.get(ods_code="ZRA01"),
    route=OptOutRoute.PRACTICE_REQUEST, recorded_by_system="region-a-test")
"""


@dataclass
class RegionA:
    root: Path
    database: str = field(default_factory=lambda: f"h25_region_a_{uuid.uuid4().hex[:8]}")
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    feed_token: str = ""
    client_id: str = ""
    client_secret: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:5432/{self.database}"

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=5
        )

    def start(self) -> None:
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self.redis = RedisServer(self.root / "redis")
        self.redis.start()
        drop = ("DATABASE_", "REDIS_", "SECRET_KEY", "CELERY_", "GUNICORN_", "FEED_", "DB_POOL_")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        self.env.update(
            DJANGO_SETTINGS_MODULE="sharedrecord.settings",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis.url,
            SECRET_KEY=secrets.token_urlsafe(50),
            DEBUG="false",
            ALLOWED_HOSTS="127.0.0.1",
            CELERY_QUEUE=f"region-a-{uuid.uuid4().hex[:8]}",
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            GUNICORN_WORKERS="1",
            GUNICORN_THREADS="4",
            PYTHONUNBUFFERED="1",
        )
        self.manage("migrate", "--no-input")
        seeded = json.loads(self.manage("shell", "-c", SEED).strip().splitlines()[-1])
        self.feed_token = seeded["feed_token"]
        self.client_id, self.client_secret = seeded["client_id"], seeded["client_secret"]
        log = (self.root / "region-a.log").open("ab")
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
             "sharedrecord.wsgi:application"],
            env=self.env, cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.processes.append(web)
        queue = self.env["CELERY_QUEUE"]
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "sharedrecord", "worker", "--loglevel", "INFO",
             "--concurrency", "1", "-Q", f"{queue},{queue}-large",
             "--hostname", f"region-a-{uuid.uuid4().hex[:6]}@%h"],
            env=self.env, cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.processes.append(worker)
        wait_until_listening(web, self.port, "region A gunicorn")

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], env=self.env, cwd=BASE_DIR,
            capture_output=True, timeout=180, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        return done.stdout.decode()

    def feed(self, bundle: dict[str, Any], timeout: float = 60) -> None:
        """POST a bundle to region A's feed endpoint and wait until its worker has processed it."""
        request = urllib.request.Request(
            f"{self.base_url}/api/v1/feeds/fhir", data=json.dumps(bundle).encode(), method="POST",
            headers={"Authorization": f"Bearer {self.feed_token}",
                     "Content-Type": "application/fhir+json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
            receipt = response.headers["Content-Location"]
        deadline = time.monotonic() + timeout
        while True:
            poll = urllib.request.Request(
                f"{self.base_url}{receipt}", headers={"Authorization": f"Bearer {self.feed_token}"}
            )
            with urllib.request.urlopen(poll, timeout=10) as response:
                status = json.loads(response.read())["status"]
            if status not in ("queued", "processing", "received"):
                assert status == "done", status
                return
            assert time.monotonic() < deadline, f"region A did not process the feed: {status}"
            time.sleep(0.3)

    def opt_out(self, nhs_number: str) -> None:
        self.manage("shell", "-c", OPT_OUT.format(nhs=nhs_number))

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, params or []).fetchall()

    def log_tail(self) -> str:
        path = self.root / "region-a.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
        for proc in self.processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=5)
        with contextlib.suppress(Exception):
            self.redis.stop()
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


@dataclass(frozen=True)
class People:
    shared: str  # fed in region A
    opted_out: str  # fed in region A, then opted out there


@pytest.fixture(scope="module")
def region_a() -> Iterator[tuple[RegionA, People]]:
    with tempfile.TemporaryDirectory(prefix="region-a-") as root:
        region = RegionA(Path(root))
        try:
            region.start()
            people = People(shared=next_nhs_number(), opted_out=next_nhs_number())
            region.feed(gp_bundle(people.shared, key="ra1", gp_ods=A_PRACTICE))
            region.feed(gp_bundle(people.opted_out, key="ra2", gp_ods=A_PRACTICE))
            region.opt_out(people.opted_out)
            yield region, people
        except (AssertionError, urllib.error.URLError, OSError):
            print(region.log_tail())
            raise
        finally:
            region.stop()
