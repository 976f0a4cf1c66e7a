"""GET /metrics: Prometheus text for the web processes, and collectors others feed.

What is exported (README "Metrics"): django-prometheus's request and database
metrics, the audit trail's write latency and last chain check, and the
collectors the apps register at start-up (ingestion's feed, parked-item and
queue metrics; the notifications pending count). No label carries personal
data: labels are organisations' ODS codes, message kinds, queues, task names
and outcomes, never a person, a path with an id, or a user.

With PROMETHEUS_MULTIPROC_DIR set (gunicorn with several workers, and the
Celery worker's endpoint) each process's counters are summed from that folder.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# Collectors computed when scraped (from PostgreSQL or Redis), registered by the apps.
_COLLECTORS: list[Collector] = []


def metrics_collector_register(collector: Collector) -> None:
    """Add a collector to /metrics (and the worker's endpoint); registering twice is a no-op."""
    if any(type(known) is type(collector) for known in _COLLECTORS):
        return
    _COLLECTORS.append(collector)


def metrics_registry(*, database: bool = True) -> CollectorRegistry:
    """The registry to export: this process's metrics (or every process's), and the collectors.

    `database=False` leaves out collectors that query PostgreSQL (a worker's
    endpoint: the web's /metrics reports those once for the deployment).
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        registry.register(_ProcessMetrics())
    for collector in _COLLECTORS:
        if database or not getattr(collector, "uses_database", True):
            registry.register(collector)
    return registry


class _ProcessMetrics(Collector):
    """This process's own metrics (the default registry) inside a registry of our own."""

    def collect(self) -> Iterator[object]:  # type: ignore[override]
        yield from REGISTRY.collect()


# --------------------------------------------------------------- notifications pending
# The notifications feature registers a function that counts what is waiting to
# be delivered, by channel; until one is registered the gauge is 0.
_pending_counters: list[Callable[[], dict[str, int]]] = []


def notifications_pending_register(count: Callable[[], dict[str, int]]) -> None:
    """Register a function returning notifications waiting to be delivered, by channel."""
    if count not in _pending_counters:
        _pending_counters.append(count)


class NotificationsPendingCollector(Collector):
    """sharedrecord_notifications_pending{channel}: what registered counters report, or 0."""

    uses_database = True

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "sharedrecord_notifications_pending",
            "Notifications waiting to be delivered, by channel.",
            labels=["channel"],
        )
        totals: dict[str, int] = {}
        for count in _pending_counters:
            for channel, pending in count().items():
                totals[channel] = totals.get(channel, 0) + pending
        if not totals:
            totals = {"all": 0}
        for channel, pending in sorted(totals.items()):
            family.add_metric([channel], pending)
        yield family


# --------------------------------------------------------------- the endpoint


def metrics_authorised(request: HttpRequest) -> bool:
    """Whether the caller may scrape: the METRICS_TOKEN bearer; with none set, only in DEBUG."""
    expected = settings.METRICS_TOKEN
    if not expected:
        return bool(settings.DEBUG)
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), expected.encode())


@require_GET
def metrics_page(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition of every metric this deployment exports."""
    if not metrics_authorised(request):
        response = HttpResponse("A valid metrics bearer token is required.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)
