"""The opt-out registry: one entry per NHS number and practice, with its history.

A person is opted out while any practice's entry for them is active. Each
practice sees and changes only its own entries, so nothing about another
practice's entry (that it exists, its note, route or times) ever reaches a
practice. Nothing about health is kept here.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from sharedrecord.models import Organisation


class OptOutStatus(models.TextChoices):
    OPTED_OUT = "opted-out", "Opted out"
    OPTED_IN = "opted-in", "Opted back in"


class OptOutRoute(models.TextChoices):
    PRACTICE_REQUEST = "practice-request", "Patient asked at the practice"
    PRACTICE_SYSTEM = "practice-system", "Recorded by the practice's system"
    FEED_CODE = "feed-code", "Code in the practice's feed"
    PROGRAMME_PHONE = "programme-phone", "Objection taken by the programme team by phone"
    PROGRAMME_EMAIL = "programme-email", "Objection taken by the programme team by e-mail"
    # The registration authority moved the person to this practice while an
    # opt-out was active elsewhere: the opt-out came with them.
    REGISTRATION_MOVED = (
        "registration-moved",
        "Moved here when the person registered with your practice",
    )


# The routes by which the programme team records an objection for a practice.
PROGRAMME_ROUTES = (OptOutRoute.PROGRAMME_PHONE, OptOutRoute.PROGRAMME_EMAIL)
# How the programme's team received an objection, as its page and API ask it.
RECEIVED_ROUTES = {"phone": OptOutRoute.PROGRAMME_PHONE, "email": OptOutRoute.PROGRAMME_EMAIL}


class OptOutQuerySet(models.QuerySet["OptOut"]):
    def active(self) -> OptOutQuerySet:
        return self.filter(status=OptOutStatus.OPTED_OUT)


class OptOut(models.Model):
    """One practice's entry for one person (by NHS number): opted out or opted back in."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    nhs_number = models.CharField("NHS number", max_length=10)
    status = models.CharField(max_length=16, choices=OptOutStatus.choices)
    practice = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    route = models.CharField(max_length=20, choices=OptOutRoute.choices)
    note = models.CharField(max_length=500, blank=True)
    changed_at = models.DateTimeField()
    # Organisations whose data the opt-out removed (ODS codes only): told to
    # re-send if the person opts back in.
    purged_source_ods = ArrayField(models.CharField(max_length=12), default=list, blank=True)
    # The registration authority's own time for the assertion that last moved this
    # entry to its practice: an older assertion (a replayed or late message) moves nothing.
    holding_asserted_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[OptOutQuerySet] = OptOutQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(nhs_number__regex=r"^[0-9]{10}$"), name="optout_nhs_number_digits"
            ),
            # Its leading column also serves the gate's lookup by NHS number.
            models.UniqueConstraint(
                fields=["nhs_number", "practice"], name="optout_one_per_practice"
            ),
        ]
        indexes = [models.Index(fields=["practice", "status", "changed_at"], name="optout_list")]
        verbose_name = "opt-out"

    def __str__(self) -> str:
        return f"Opt-out {self.public_id} ({self.status})"


class OptOutChange(models.Model):
    """One change to an entry: who recorded it, when, by which route. Kept for good.

    `practice` is the practice the change was recorded for. When a registration
    move merges two entries the changes go with the surviving entry, and each
    practice is shown only the changes recorded for it.
    """

    optout = models.ForeignKey(OptOut, on_delete=models.PROTECT, related_name="changes")
    status = models.CharField(max_length=16, choices=OptOutStatus.choices)
    practice = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    route = models.CharField(max_length=20, choices=OptOutRoute.choices)
    note = models.CharField(max_length=500, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    recorded_by_system = models.CharField(max_length=100, blank=True)
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["-recorded_at", "-id"]

    def __str__(self) -> str:
        return f"{self.status} at {self.recorded_at:%Y-%m-%d %H:%M}"
