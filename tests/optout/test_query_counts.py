"""Query-count guards on the opt-out registry's read paths (STYLE.md section 13).

Each bound is today's count with a few opt-outs on the register: a read that
costs a query per opt-out fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from optout.models import OptOut
from sharedrecord.models import User
from tests.factories import client_for, next_nhs_number, optout_api_register

pytestmark = pytest.mark.django_db

LIST_PAGE = 16
DETAIL_PAGE = 16
API_LIST = 16
API_DETAIL = 17
API_CHECK = 13


def test_the_registry_reads(practice_gp: User, django_assert_max_num_queries: Any) -> None:
    client = client_for(practice_gp)
    for _ in range(5):
        assert optout_api_register(client, next_nhs_number()).status_code == 201
    entry = OptOut.objects.order_by("id").first()
    assert entry is not None
    check = {"nhs_number": entry.nhs_number}
    for method, path, bound in (
        ("get", "/optouts/", LIST_PAGE),
        ("get", f"/optouts/{entry.public_id}", DETAIL_PAGE),
        ("get", "/api/v1/optouts/", API_LIST),
        ("get", f"/api/v1/optouts/{entry.public_id}", API_DETAIL),
        ("post", "/api/v1/optouts/check", API_CHECK),
    ):
        with django_assert_max_num_queries(bound):
            response = _ask(client, method, path, check)
        assert response.status_code == 200, path


def _ask(client: Client, method: str, path: str, body: dict[str, str]) -> Any:
    if method == "post":
        return client.post(path, body, content_type="application/json")
    return client.get(path)
