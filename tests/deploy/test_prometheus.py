"""The Prometheus scrape config and alert rules hold together with what the code exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

BASE_DIR = Path(__file__).resolve().parents[2]
PROMETHEUS = BASE_DIR / "deploy" / "prometheus"
CODE = ["sharedrecord/metrics.py", "sharedrecord/taskmetrics.py", "ingestion/metrics.py",
        "audit/metrics.py"]  # fmt: skip


def exported_names() -> set[str]:
    names: set[str] = set()
    for path in CODE:
        names |= set(re.findall(r'"(sharedrecord_[a-z_]+)"', (BASE_DIR / path).read_text()))
    return names


def test_every_alert_uses_only_metrics_the_code_exports() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    exported = exported_names()
    alerts = {rule["alert"]: rule["expr"] for g in rules["groups"] for rule in g["rules"]}
    assert {"FeedSilent", "QueueBacklogOld", "AuditChainBroken"} <= set(alerts)
    for name, expr in alerts.items():
        used = set(re.findall(r"sharedrecord_[a-z_]+", expr))
        # Counters are exported with _total; histograms with _count/_sum/_bucket.
        bare = {re.sub(r"_(total|count|sum|bucket)$", "", metric) for metric in used}
        assert used, name
        assert bare <= exported, (name, bare - exported)
    assert "300" in alerts["QueueBacklogOld"]


def test_the_scrape_config_reads_the_rules_and_both_kinds_of_process() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["sharedrecord-web"]["metrics_path"] == "/metrics"
    assert jobs["sharedrecord-web"]["authorization"]["type"] == "Bearer"
    compose = yaml.safe_load((BASE_DIR / "deploy" / "compose.yaml").read_text())
    workers = [n for n in compose["services"] if n.startswith("worker")]
    targets = {t for c in jobs["sharedrecord-workers"]["static_configs"] for t in c["targets"]}
    port = compose["services"]["worker"]["environment"]["WORKER_METRICS_PORT"]
    assert targets == {f"{name}:{port}" for name in workers}


def test_promtool_accepts_the_rules_where_it_is_installed() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        return  # Debian's `prometheus` package has it; the structure is checked above
    result = subprocess.run(
        [promtool, "check", "rules", str(PROMETHEUS / "alerts.yml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
