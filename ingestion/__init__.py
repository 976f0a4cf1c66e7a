"""Feed endpoints, inbound messages, parsers, matching, the upsert and Celery tasks."""
