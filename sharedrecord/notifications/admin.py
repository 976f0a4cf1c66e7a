"""Operators see subscriptions and their deliveries, dead letters among them, and replay those."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from sharedrecord.auditing import actor_for
from sharedrecord.models import User
from sharedrecord.notifications.delivery import delivery_replay
from sharedrecord.notifications.models import Delivery, Subscription


class ReadOnly(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnly):
    list_display = ("public_id", "organisation", "kind", "content", "status", "error",
                    "events_since_start", "last_sent_at")  # fmt: skip
    list_filter = ("status", "kind")
    exclude = ("secret",)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly):
    list_display = ("subscription", "event_number", "state", "attempts", "last_error",
                    "next_attempt_at", "sent_at")  # fmt: skip
    list_filter = ("state",)
    exclude = ("patient", "event")
    actions = ("replay",)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    @admin.action(description="Send the selected dead letters again")
    def replay(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        from sharedrecord.notifications.tasks import subscription_deliver_task

        assert isinstance(request.user, User)
        ids = delivery_replay(
            delivery_ids=list(queryset.values_list("pk", flat=True)),
            actor=actor_for(request.user),
        )
        for subscription_id in ids:
            transaction.on_commit(partial(subscription_deliver_task.delay, subscription_id))
        messages.success(request, "The dead letters were queued to be sent again.")
