"""Feed health for the programme's operators: each connected system, how it is doing.

Reads only (a selector module): ids, times, counts and reason codes, never a
message's content or a person. A fixed number of queries whatever the number
of systems or messages.
"""

from __future__ import annotations

import datetime
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import Count, Max
from django.utils import timezone

from ingestion.models import FeedCredential, FeedMessage, MatchQueueItem, MessageStatus

DAY_HOURS = 24
FAILURES_SHOWN = 200


class FeedState:
    LATE = "late"
    ON_TIME = "on-time"
    NOT_MONITORED = "not-monitored"
    NEVER = "never-sent"


@dataclass(frozen=True)
class FailedMessage:
    """A message that used up its attempts and waits for an operator's replay."""

    public_id: str
    received_at: datetime.datetime
    attempts: int
    stage: str
    error: str  # the exception's class, never its text


@dataclass
class SystemHealth:
    """One connected system (a live feed credential) of one organisation."""

    credential_id: str
    organisation: str
    ods_code: str
    system: str
    last_received_at: datetime.datetime | None
    expected_interval: datetime.timedelta | None
    state: str
    received_today: int = 0
    hourly: list[int] = field(default_factory=lambda: [0] * DAY_HOURS)  # oldest hour first
    rejects: dict[str, int] = field(default_factory=dict)  # reason code -> count, last 24 h
    parks: dict[str, int] = field(default_factory=dict)  # park reason -> unresolved items
    failures: list[FailedMessage] = field(default_factory=list)

    @property
    def late(self) -> bool:
        return self.state == FeedState.LATE


def feed_state(
    *,
    last: datetime.datetime | None,
    expected: datetime.timedelta | None,
    now: datetime.datetime,
) -> str:
    """A system is late when it normally sends (an expected interval) and is silent past it."""
    if last is None:
        return FeedState.NEVER
    if expected is None:
        return FeedState.NOT_MONITORED
    return FeedState.LATE if now - last > expected else FeedState.ON_TIME


def feed_health(*, now: datetime.datetime | None = None) -> list[SystemHealth]:
    """Every live feed credential's health, late ones first, then by organisation and system."""
    now = now or timezone.now()
    since = now - datetime.timedelta(hours=DAY_HOURS)
    credentials = list(
        FeedCredential.objects.filter(revoked_at__isnull=True)
        .select_related("organisation")
        .order_by("organisation__name", "system")
    )
    ids = [c.pk for c in credentials]
    last = dict(
        FeedMessage.objects.filter(credential_id__in=ids)
        .values("credential_id")
        .annotate(last=Max("received_at"))
        .values_list("credential_id", "last")
    )
    rows: dict[int, SystemHealth] = {}
    for credential in credentials:
        organisation = credential.organisation
        expected = organisation.feed_expected_interval
        rows[credential.pk] = SystemHealth(
            credential_id=str(credential.public_id),
            organisation=organisation.name,
            ods_code=organisation.ods_code,
            system=credential.system,
            last_received_at=last.get(credential.pk),
            expected_interval=expected,
            state=feed_state(last=last.get(credential.pk), expected=expected, now=now),
        )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT credential_id, floor(extract(epoch FROM %s - received_at) / 3600)::int, count(*)
            FROM ingestion_feedmessage
            WHERE credential_id = ANY(%s) AND received_at > %s AND received_at <= %s
            GROUP BY 1, 2
            """,
            [now, ids, since, now],
        )
        for credential_id, hours_ago, count in cursor.fetchall():
            health = rows[credential_id]
            health.hourly[DAY_HOURS - 1 - min(hours_ago, DAY_HOURS - 1)] += count
            health.received_today += count
        # Issues name reason codes (never values): a rejected message, or an entry
        # rejected or parked in a kept one. Parks are counted from the queue below.
        cursor.execute(
            """
            SELECT m.credential_id, issue ->> 'code', count(*)
            FROM ingestion_feedmessage m, jsonb_array_elements(m.issues) issue
            WHERE m.credential_id = ANY(%s) AND m.received_at > %s
              AND jsonb_typeof(m.issues) = 'array'
              AND NOT coalesce(issue ->> 'code', '') LIKE 'parked-%%'
              AND coalesce(issue ->> 'severity', 'error') IN ('error', 'fatal')
            GROUP BY 1, 2
            """,
            [ids, since],
        )
        rejects: dict[int, Counter[str]] = defaultdict(Counter)
        for credential_id, code, count in cursor.fetchall():
            rejects[credential_id][code or "unknown"] += count
    for credential_id, counts in rejects.items():
        rows[credential_id].rejects = dict(sorted(counts.items()))
    parked = (
        MatchQueueItem.objects.filter(resolved_at__isnull=True, message__credential_id__in=ids)
        .values("message__credential_id", "reason")
        .annotate(n=Count("id"))
    )
    for row in parked:
        rows[row["message__credential_id"]].parks[row["reason"]] = row["n"]
    failed = FeedMessage.objects.filter(
        credential_id__in=ids, status=MessageStatus.FAILED
    ).order_by("-received_at")[:FAILURES_SHOWN]
    for message in failed.only("credential_id", "public_id", "received_at", "attempts", "failure"):
        failure = message.failure or {}
        rows[message.credential_id].failures.append(
            FailedMessage(
                public_id=str(message.public_id),
                received_at=message.received_at,
                attempts=message.attempts,
                stage=str(failure.get("stage", "")),
                error=str(failure.get("error", "")),
            )
        )
    return sorted(rows.values(), key=lambda h: (not h.late, h.organisation, h.system))
