"""Reads of the opt-out registry. The gate that ingestion asks lives here."""

from __future__ import annotations

import datetime

from django.db.models import QuerySet

from optout.models import OptOut, OptOutStatus
from sharedrecord.models import Organisation


def optout_blocks(*, nhs_number: str) -> bool:
    """True when this NHS number has an active opt-out, so nothing may be stored for it.

    Call it inside the upsert transaction after taking the person's lock
    (sharedrecord.services.patient_lock): the opt-out takes the same lock, so
    a concurrent opt-out always wins.
    """
    return OptOut.objects.active().filter(nhs_number=nhs_number).exists()


def optouts_for_practice(*, practice: Organisation, search: str = "") -> QuerySet[OptOut]:
    """The practice's own entries, newest change first; search by NHS number."""
    entries = OptOut.objects.filter(practice=practice).order_by("-changed_at", "-id")
    digits = "".join(ch for ch in search if ch.isdigit())
    return entries.filter(nhs_number__startswith=digits) if digits else entries


def optins_since(*, since: datetime.datetime) -> QuerySet[OptOut]:
    """People who opted back in since a time: partner systems re-send their data."""
    return OptOut.objects.filter(status=OptOutStatus.OPTED_IN, changed_at__gte=since).order_by(
        "changed_at", "id"
    )
