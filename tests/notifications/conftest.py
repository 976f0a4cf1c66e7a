"""The notifications tests' receivers are plain http on localhost (production: https only)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _http_receivers_allowed(settings: Any) -> None:
    settings.NOTIFY_ALLOW_HTTP = True
