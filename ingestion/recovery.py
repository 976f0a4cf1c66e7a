"""Recovering messages: the sweep that re-queues stuck or lost ones, and an operator's replay."""

from __future__ import annotations

import datetime

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditAction
from audit.trail import AuditActor, audit_event_record
from ingestion.models import FeedMessage, MessageStatus
from ingestion.processing import MESSAGE_LOCK_NAMESPACE
from ingestion.receiving import enqueue, enqueue_after_commit


def feed_messages_sweep(*, older_than: datetime.timedelta) -> int:
    """Re-queue messages whose worker died (stuck PROCESSING) or whose task was lost.

    A PROCESSING message is stuck only if no session holds its processing
    lock: a live worker always does, so a slow message is never taken twice;
    its receipt then says the attempt ended with the worker lost.
    A message still RECEIVED after `older_than` was stored but its task never
    ran (for example Redis was down at commit), or its retry was lost; one
    waiting for a retry is left until `older_than` after its retry time.
    Side effects: a task for each.
    """
    cutoff = timezone.now() - older_than
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE ingestion_feedmessage m SET status = %s,
              failure = jsonb_build_object('stage', 'worker-lost', 'entries', '[]'::jsonb,
                'expression', '[]'::jsonb, 'error', '', 'attempt', m.attempts)
            WHERE m.status = %s AND m.started_at <= %s
              AND NOT EXISTS (
                  SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.classid = %s::int::oid
                    AND l.objid = (m.id %% 2147483647)::int::oid AND l.objsubid = 2)
            """,
            [MessageStatus.RECEIVED, MessageStatus.PROCESSING, cutoff, MESSAGE_LOCK_NAMESPACE],
        )
    waiting = list(
        FeedMessage.objects.filter(status=MessageStatus.RECEIVED, received_at__lte=cutoff)
        .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=cutoff))
        .values_list("pk", "entry_count")
    )
    for pk, entry_count in waiting:
        enqueue(message_pk=pk, entry_count=entry_count)
    return len(waiting)


@transaction.atomic
def feed_message_replay(*, message: FeedMessage, actor: AuditActor) -> bool:
    """Queue a FAILED message again from its first attempt, once its fault is fixed.

    Only a FAILED message is replayed (it still holds its payload); anything
    else is left alone and False returned.
    Side effects: one audit event naming `actor`; a task once this commits.
    """
    replayed = FeedMessage.objects.filter(pk=message.pk, status=MessageStatus.FAILED).update(
        status=MessageStatus.RECEIVED,
        attempts=0,
        failure={},
        retry_at=None,
        started_at=None,
        finished_at=None,
        counts={},
        issues=[],
    )
    if replayed != 1:
        return False
    audit_event_record(
        action=AuditAction.ADMIN_CHANGE,
        actor=actor,
        detail={
            "model": "ingestion.FeedMessage",
            "object": str(message.public_id),
            "change": "replayed",
        },
        source_ods=[message.organisation.ods_code],
    )
    transaction.on_commit(lambda: enqueue_after_commit(message=message))
    return True
