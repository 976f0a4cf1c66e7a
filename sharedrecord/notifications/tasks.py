"""Celery entry points of notifications (thin: ids in, a service called)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone


@shared_task(name="notifications.dispatch", ignore_result=True, acks_late=True)
def notification_events_dispatch_task() -> int:
    from sharedrecord.notifications.dispatch import notification_events_dispatch

    return notification_events_dispatch()


@shared_task(name="notifications.deliver", ignore_result=True, acks_late=True)
def subscription_deliver_task(subscription_id: int) -> None:
    from sharedrecord.notifications.delivery import subscription_deliver

    retry_at = subscription_deliver(subscription_id=subscription_id)
    if retry_at is not None:
        # Backoff is capped (NOTIFY_BACKOFF_MAX_SECONDS) below Redis's visibility timeout.
        delay = max((retry_at - timezone.now()).total_seconds(), 0.0)
        subscription_deliver_task.apply_async((subscription_id,), countdown=delay)


@shared_task(name="notifications.handshake", ignore_result=True, acks_late=True)
def subscription_handshake_task(subscription_id: int) -> None:
    from sharedrecord.notifications.delivery import subscription_handshake

    subscription_handshake(subscription_id=subscription_id)


@shared_task(name="notifications.sweep", ignore_result=True)
def notifications_sweep_task() -> None:
    """Dispatch waiting events, queue due deliveries, send heartbeats (every 30 s, beat)."""
    from sharedrecord.notifications.subscriptions import notifications_sweep

    notifications_sweep()
