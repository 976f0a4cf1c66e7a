"""Feed metrics: messages by organisation, kind and outcome; parked items by age; freshness.

Counted from PostgreSQL when /metrics is scraped, so every web process reports
the same, deployment-wide numbers whichever worker or host did the work. The
accept-to-queryable latency is observed by the worker that commits a message.
Labels are ODS codes, message kinds, outcomes and park reasons: never a person.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db import connection
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

ACCEPT_TO_QUERYABLE_SECONDS = Histogram(
    "sharedrecord_feed_accept_to_queryable_seconds",
    "From a message's receipt (202 or AA) to its entries being readable, by organisation and kind.",
    ["organisation", "kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)

# Parked items' age bands (upper bounds in seconds; the last has none).
PARKED_AGE_BANDS = (("lt-1h", 3600), ("1h-1d", 86400), ("1d-7d", 7 * 86400), ("ge-7d", None))


class FeedCollector(Collector):
    """Messages received, processed, rejected, failed and pending, and entries parked."""

    uses_database = True

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT o.ods_code, m.kind, m.status, count(*),
                       coalesce(sum((m.counts ->> 'parked')::bigint), 0)
                FROM ingestion_feedmessage m
                JOIN sharedrecord_organisation o ON o.id = m.organisation_id
                GROUP BY o.ods_code, m.kind, m.status
                """
            )
            rows = cursor.fetchall()
        labels = ["organisation", "kind"]
        received = CounterMetricFamily(
            "sharedrecord_feed_messages_received",
            "Feed messages accepted (stored and answered), by organisation and kind.",
            labels=labels,
        )
        outcome = CounterMetricFamily(
            "sharedrecord_feed_messages_finished",
            "Feed messages finished, by organisation, kind and outcome (done, rejected, failed).",
            labels=[*labels, "outcome"],
        )
        parked = CounterMetricFamily(
            "sharedrecord_feed_entries_parked",
            "Entries parked for review (no safe match), by organisation and kind.",
            labels=labels,
        )
        pending = GaugeMetricFamily(
            "sharedrecord_feed_messages_pending",
            "Feed messages stored and not yet finished (received, processing or retrying).",
            labels=labels,
        )
        totals: dict[tuple[str, str], list[int]] = {}
        for ods, kind, status, count, parked_entries in rows:
            total = totals.setdefault((ods, kind), [0, 0, 0])
            total[0] += count
            total[1] += parked_entries
            if status in ("done", "rejected", "failed"):
                outcome.add_metric([ods, kind, status], count)
            else:
                total[2] += count
        for (ods, kind), (count, parked_entries, waiting) in sorted(totals.items()):
            received.add_metric([ods, kind], count)
            parked.add_metric([ods, kind], parked_entries)
            pending.add_metric([ods, kind], waiting)
        yield from (received, outcome, parked, pending)


class ParkedCollector(Collector):
    """Unresolved parked items by age band and reason, and the oldest one's age."""

    uses_database = True

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT reason, extract(epoch FROM now() - created_at)::bigint
                FROM ingestion_matchqueueitem WHERE resolved_at IS NULL
                """
            )
            rows = cursor.fetchall()
        by_age = GaugeMetricFamily(
            "sharedrecord_parked_items",
            "Parked items awaiting review, by age band and reason.",
            labels=["age", "reason"],
        )
        counts: dict[tuple[str, str], int] = {}
        reasons = sorted({reason for reason, _ in rows})
        for band, _ in PARKED_AGE_BANDS:
            for reason in reasons:
                counts[(band, reason)] = 0
        for reason, seconds in rows:
            band = next(b for b, upper in PARKED_AGE_BANDS if upper is None or seconds < upper)
            counts[(band, reason)] += 1
        for (band, reason), count in counts.items():
            by_age.add_metric([band, reason], count)
        yield by_age
        yield GaugeMetricFamily(
            "sharedrecord_parked_oldest_age_seconds",
            "How long the oldest unresolved parked item has waited (0 when none).",
            value=max((seconds for _, seconds in rows), default=0),
        )


class FeedFreshnessCollector(Collector):
    """When each organisation last sent data, and how often it is expected to."""

    uses_database = True

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT ods_code, extract(epoch FROM last_feed_at),
                       extract(epoch FROM feed_expected_interval)
                FROM sharedrecord_organisation
                WHERE last_feed_at IS NOT NULL OR feed_expected_interval IS NOT NULL
                """
            )
            rows = cursor.fetchall()
        last = GaugeMetricFamily(
            "sharedrecord_feed_last_received_timestamp_seconds",
            "When an organisation's feed last delivered data (Unix time).",
            labels=["organisation"],
        )
        expected = GaugeMetricFamily(
            "sharedrecord_feed_expected_interval_seconds",
            "How often an organisation's feed is expected to send (set per organisation).",
            labels=["organisation"],
        )
        for ods, last_at, interval in rows:
            if last_at is not None:
                last.add_metric([ods], float(last_at))
            if interval is not None:
                expected.add_metric([ods], float(interval))
        yield last
        yield expected
