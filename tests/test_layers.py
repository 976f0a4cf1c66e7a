"""The apps' one-way layering holds: ingestion -> optout -> sharedrecord -> audit.

The contracts are in pyproject.toml ([tool.importlinter]); `make lint` runs
them too. This test keeps them in the suite, so an upward import fails it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from django.conf import settings


def test_every_import_contract_is_kept() -> None:
    command = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(command), "--no-cache"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "0 broken" in result.stdout
