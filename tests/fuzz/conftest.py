"""The fuzz suite's figures, shown at the end of every run that fuzzed (with or without -s).

Each fuzz test writes its figures to `.data/fuzz-summary.json` (the README quotes
them); this hook prints those written during this session.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

SUMMARY = Path(__file__).resolve().parents[2] / ".data" / "fuzz-summary.json"
SESSION_STARTED = time.time()


def summary_record(suite: str, figures: dict[str, Any]) -> None:
    """Add one suite's figures to the summary file (other suites' figures are kept)."""
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    try:
        every = json.loads(SUMMARY.read_text())
    except (OSError, ValueError):
        every = {}
    every[suite] = {
        **figures,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "written_at": time.time(),
    }
    SUMMARY.write_text(json.dumps(every, indent=2, sort_keys=True) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not SUMMARY.exists() or SUMMARY.stat().st_mtime < SESSION_STARTED:
        return
    every = json.loads(SUMMARY.read_text())
    ours = {k: v for k, v in every.items() if v.get("written_at", 0) >= SESSION_STARTED}
    if not ours:
        return
    terminalreporter.section("fuzz summary")
    for suite, figures in sorted(ours.items()):
        terminalreporter.write_line(
            f"{suite}: {figures['inputs']} inputs, {figures['server_errors']} 5xx, "
            f"{figures['shape_errors']} errors not in the protocol's shape, "
            f"{figures['seconds']} s ({SUMMARY.name})"
        )
