"""No record route accepts a write: the combined record is read-only (the sources own it)."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.urlwalk import walk

pytestmark = pytest.mark.django_db

# Staff pages that take a POST, and what they write (never the record itself).
WRITES = {
    "/search": "the search form (POST keeps NHS numbers out of URLs)",
    "/access/": "the access basis and emergency access (audited)",
    "/optouts/": "the opt-out registry (GP practices)",
    "/accounts/": "sign-in and sign-out",
    "/admin/": "administration (read-only for clinical data)",
    "/api/": "feeds, the opt-out API and governance findings",
    "/governance/": "a privacy officer's finding on a flagged access (never the record)",
    "/fhir/R4/": "the read API: POST only for Patient/_search, every write answers 405",
    "/o/": "OAuth2 tokens for the read API (authorize, token, revoke, introspect)",
}


def test_every_record_route_refuses_every_write(client: Client, registered_gp) -> None:
    client.force_login(registered_gp)
    record_routes = [r for r in walk() if r.path.startswith("/record/")]
    assert len(record_routes) >= 3
    for route in record_routes:
        for method in ("post", "put", "patch", "delete"):
            response = getattr(client, method)(route.path)
            assert response.status_code == 405, (method, route.path, response.status_code)


def test_every_route_outside_the_record_is_known(client: Client) -> None:
    unknown = [
        r.path
        for r in walk()
        if not r.path.startswith("/record/")
        and not any(r.path.startswith(prefix) for prefix in WRITES)
        and r.path not in {"/", "/healthz", "/readyz", "/help/roles"}
    ]
    assert unknown == []
