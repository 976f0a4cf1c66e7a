"""The client address written to the audit trail cannot be chosen by the client."""

from __future__ import annotations

from django.test import RequestFactory
from pytest_django.fixtures import Settings as SettingsWrapper

from audit.context import context_for


def _request(forwarded_for: str):
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR=forwarded_for)
    request.request_id = "r1"  # type: ignore[attr-defined]
    return request


def test_without_a_trusted_proxy_the_connections_address_is_used(settings: SettingsWrapper) -> None:
    settings.TRUST_X_FORWARDED_FOR = False
    context = context_for(_request("203.0.113.9"))
    assert (context.request_id, context.client_address) == ("r1", "10.1.1.1")


def test_behind_our_proxy_only_the_hop_it_added_is_used(settings: SettingsWrapper) -> None:
    settings.TRUST_X_FORWARDED_FOR = True
    # The client claimed 198.51.100.7; our terminator appended what it saw.
    context = context_for(_request("198.51.100.7, 203.0.113.9"))
    assert context.client_address == "203.0.113.9"


def test_a_malformed_address_is_left_out(settings: SettingsWrapper) -> None:
    settings.TRUST_X_FORWARDED_FOR = True
    assert context_for(_request("not-an-ip")).client_address is None
