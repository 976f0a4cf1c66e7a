"""Service resolution: given URLs win, and the embedded fallback really starts servers."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
import redis
from django.conf import settings

from sharedrecord.localservices import (
    postgres_answers,
    redis_answers,
    resolve_postgres,
    resolve_redis,
    stop_embedded,
)
from tests.services import database_url, free_port


def test_a_given_database_url_is_used_as_it_is() -> None:
    url = database_url(settings.DATABASES["default"])
    assert resolve_postgres({"DATABASE_URL": url}) == url


def test_a_given_url_that_does_not_answer_stops_with_a_clear_message() -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    with pytest.raises(SystemExit, match="DATABASE_URL is set but no PostgreSQL answers"):
        resolve_postgres({"DATABASE_URL": dead})
    with pytest.raises(SystemExit, match="REDIS_URL is set but no Redis answers"):
        resolve_redis({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})


def test_embedded_postgresql_starts_when_nothing_answers(tmp_path: Path) -> None:
    default = f"postgresql://postgres@127.0.0.1:{free_port()}/embedded_check"
    assert not postgres_answers(default)
    url = resolve_postgres({}, tmp_path, default_url=default, start_installed=False)
    try:
        assert str(tmp_path / "postgres").replace("/", "%2F") in url
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT current_database()").fetchone()
        assert row == ("embedded_check",)
    finally:
        stop_embedded(tmp_path / "postgres")


def test_embedded_redis_starts_when_nothing_answers(tmp_path: Path) -> None:
    default = f"redis://127.0.0.1:{free_port()}/0"
    assert not redis_answers(default)
    url = resolve_redis({}, tmp_path, default_url=default, start_installed=False)
    try:
        assert url == default
        client = redis.Redis.from_url(url)
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        stop_embedded(tmp_path / "redis")
        deadline = time.monotonic() + 10
        while redis_answers(default) and time.monotonic() < deadline:
            time.sleep(0.1)
