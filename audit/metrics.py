"""The audit trail's metrics: how long writes take, and the last chain check's outcome.

No label carries personal data: writes are labelled by kind ("event" or
"batch"); the chain check's outcome is a number and a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import redis
from django.conf import settings
from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

AUDIT_WRITE_SECONDS = Histogram(
    "sharedrecord_audit_write_seconds",
    "Time to append audit events to the trail (one event, or a batch).",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)

# Where audit_verify leaves its outcome for the metrics endpoint to read.
VERIFY_OUTCOME_KEY = "sharedrecord:audit-verify:last"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


def audit_verify_outcome_note(*, intact: bool, events_checked: int) -> None:
    """Record the outcome of a chain check (manage.py audit_verify) for the metrics.

    Side effects: one Redis key, overwritten each run.
    """
    outcome = {"intact": intact, "events": events_checked, "at": time.time()}
    _redis().set(VERIFY_OUTCOME_KEY, json.dumps(outcome))


class AuditChainCollector(Collector):
    """The last chain check: intact (1) or broken (0), when it ran, how many events."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            raw = _redis().get(VERIFY_OUTCOME_KEY)
        except redis.RedisError:
            return
        if raw is None:
            return
        outcome = json.loads(raw)
        yield GaugeMetricFamily(
            "sharedrecord_audit_chain_intact",
            "1 if the last audit_verify found every chain intact, 0 if it found a break.",
            value=1 if outcome["intact"] else 0,
        )
        yield GaugeMetricFamily(
            "sharedrecord_audit_chain_verified_timestamp_seconds",
            "When audit_verify last ran (Unix time).",
            value=float(outcome["at"]),
        )
        yield GaugeMetricFamily(
            "sharedrecord_audit_chain_events_checked",
            "How many events the last audit_verify checked.",
            value=float(outcome["events"]),
        )
