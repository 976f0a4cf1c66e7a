"""The replica router's rules that need no replica (tests/sharedrecord/test_replica.py runs one)."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from oauth2_provider.models import AccessToken

from audit.models import AuditEvent
from sharedrecord.dbrouter import (
    PRIMARY,
    STICKY_SESSION_KEY,
    ReplicaRouter,
    read_alias,
    replica_reads,
)
from sharedrecord.models import AccessBasis, Entry, Patient, User
from tests.factories import confirm_basis, partner, signed_in
from tests.fhirapi import fhir_get, partner_token

router = ReplicaRouter()


def test_without_a_replica_everything_reads_the_primary() -> None:
    assert read_alias() == PRIMARY
    with replica_reads(allowed=True) as reads:
        assert not reads.allowed  # DATABASE_REPLICA_URL is not set in the tests
        assert router.db_for_read(Entry) == PRIMARY


@pytest.mark.parametrize("model", [Session, User, AccessBasis, AccessToken])
def test_what_must_never_be_stale_always_reads_the_primary(model: type) -> None:
    with replica_reads(allowed=True) as reads:
        reads.allowed, reads.fresh = True, True  # as if a fresh replica were there
        assert router.db_for_read(model) == PRIMARY
        assert router.db_for_read(Patient) == "replica"
        assert router.db_for_read(AuditEvent) == "replica"


def test_a_write_sends_the_rest_of_the_request_to_the_primary() -> None:
    with replica_reads(allowed=True) as reads:
        reads.allowed, reads.fresh = True, True
        assert router.db_for_read(Entry) == "replica"
        router.db_for_write(Session)  # saving the session is not a write of the record
        assert router.db_for_read(Entry) == "replica"
        assert router.db_for_write(AccessBasis) == PRIMARY
        assert reads.wrote
        assert router.db_for_read(Entry) == PRIMARY


def test_only_the_primary_is_migrated() -> None:
    assert router.allow_migrate(PRIMARY, "sharedrecord")
    assert not router.allow_migrate("replica", "sharedrecord")


@pytest.mark.django_db
def test_a_partner_system_is_given_no_session_by_its_token_or_its_reads(client: Client) -> None:
    """A bearer client's writes (its token) make no session: it would be read and saved,
    with a durable commit, on every read a client that keeps cookies made after."""
    token = partner_token(client, partner("ZAC01"))
    assert settings.SESSION_COOKIE_NAME not in client.cookies
    assert fhir_get(client, token, "metadata").status_code == 200
    assert settings.SESSION_COOKIE_NAME not in client.cookies
    assert not Session.objects.exists()


@pytest.mark.django_db
def test_a_signed_in_session_that_wrote_reads_the_primary_for_a_while(
    client: Client, registered_gp: User, record: Patient
) -> None:
    signed_in(client, registered_gp)
    assert confirm_basis(client, record).status_code == 302  # records a basis: a write
    assert client.session[STICKY_SESSION_KEY] > time.time()
