"""The Django project and the combined record."""

from sharedrecord.celery import app as celery_app

__all__ = ["celery_app"]
