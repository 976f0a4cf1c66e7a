"""/healthz says the process is alive; /readyz says PostgreSQL and Redis answer."""

from __future__ import annotations

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from tests.services import private_redis

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_sign_in(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_when_database_redis_and_migrations_are(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": True, "migrations": True, "redis": True},
    }


def test_readyz_reports_a_stopped_redis_as_not_ready(
    client: Client, settings: SettingsWrapper
) -> None:
    with private_redis() as (url, proc):
        settings.REDIS_URL = url
        assert client.get("/readyz").status_code == 200
        proc.terminate()
        proc.wait(timeout=10)
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "not-ready",
        "checks": {"database": True, "migrations": True, "redis": False},
    }
