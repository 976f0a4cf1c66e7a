from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from ingestion.models import FeedCredential
from tests.factories import make_credential, make_organisation


@pytest.fixture
def gp_practice(db: None):
    return make_organisation(
        ods_code="Z81001", name="Riverside Medical Practice", kind="gp-practice"
    )


@pytest.fixture
def feed(gp_practice) -> tuple[FeedCredential, str]:
    return make_credential(gp_practice)


class FeedClient:
    """Posts to the feed API as a partner system would."""

    def __init__(self, client: Client, token: str) -> None:
        self.client, self.token = client, token

    def post(
        self,
        body: dict[str, Any] | bytes | str,
        *,
        content_type: str = "application/fhir+json",
        headers: dict[str, str] | None = None,
    ):
        data = json.dumps(body) if isinstance(body, dict) else body
        return self.client.post(
            "/api/v1/feeds/fhir",
            data=data,
            content_type=content_type,
            headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
        )

    def receipt(self, location: str):
        return self.client.get(location, headers={"Authorization": f"Bearer {self.token}"})


@pytest.fixture
def partner(client: Client, feed: tuple[FeedCredential, str]) -> FeedClient:
    return FeedClient(client, feed[1])
