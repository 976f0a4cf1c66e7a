"""Large messages are processed from their own queue, so HL7 v2 never waits behind them."""

from __future__ import annotations

from pytest_django.fixtures import Settings as SettingsWrapper

from ingestion.receiving import feed_queue
from sharedrecord.celery import app


def test_small_messages_go_to_the_default_queue_and_large_ones_to_their_own(
    settings: SettingsWrapper,
) -> None:
    settings.FEED_LARGE_ENTRIES = 50
    settings.FEED_LARGE_QUEUE = ""
    default = app.conf.task_default_queue
    assert feed_queue(entry_count=7) == default
    assert feed_queue(entry_count=50) == default
    assert feed_queue(entry_count=51) == f"{default}-large"


def test_the_large_messages_queue_can_be_named(settings: SettingsWrapper) -> None:
    settings.FEED_LARGE_ENTRIES = 50
    settings.FEED_LARGE_QUEUE = "bulk-feeds"
    assert feed_queue(entry_count=5000) == "bulk-feeds"
    assert feed_queue(entry_count=1) == app.conf.task_default_queue
