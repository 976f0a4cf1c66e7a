"""Fixtures the governance tests share."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import PROGRAMME_ODS


@pytest.fixture
def programme(settings: Any) -> None:
    """The programme that runs the record (PROGRAMME_ODS) reads the whole trail."""
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME_ODS]
