"""Feeds in: endpoints, inbound messages and receipts, parsers, processing, Celery tasks."""
