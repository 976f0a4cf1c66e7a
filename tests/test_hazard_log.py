"""The hazard log's controls are real: every test it names exists, and every hazard names one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
LOG = BASE_DIR / "docs" / "hazard-log.md"
NODE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]`]*\])?`")


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def _hazards() -> dict[str, str]:
    text = LOG.read_text()
    parts = re.split(r"^## (H-\d{3}) ", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_control_test_the_hazard_log_names_exists() -> None:
    named = NODE.findall(LOG.read_text())
    assert named
    missing = [
        f"{file}::{name}"
        for file, name in named
        if not (BASE_DIR / file).exists() or name not in _test_functions(BASE_DIR / file)
    ]
    assert missing == []


def test_every_hazard_has_the_dcb0129_fields_and_a_control_test() -> None:
    hazards = _hazards()
    assert len(hazards) >= 13
    for hazard, body in hazards.items():
        for label in (
            "Hazard:", "Cause:", "Effect:", "Harm:", "Initial risk:", "Controls:",
            "Control tests:", "Residual risk:",
        ):  # fmt: skip
            assert f"**{label}**" in body, (hazard, label)
        assert NODE.search(body), hazard


def test_the_clinical_fidelity_findings_each_have_a_named_test() -> None:
    hazards = _hazards()
    for n in range(1, 14):
        body = hazards[f"H-{n:03d}"]
        assert f"::test_finding_{n:02d}_" in body, n


def test_the_platform_wide_hazards_are_logged() -> None:
    titles = re.findall(r"^## (H-\d{3}) (.+)$", LOG.read_text(), flags=re.MULTILINE)
    text = " ".join(title.lower() for _, title in titles)
    for topic in (
        "wrong person", "missing data", "stale data", "opted-out", "sensitive data",
        "break-glass", "audit trail", "notification not delivered",
    ):  # fmt: skip
        assert topic in text, topic
