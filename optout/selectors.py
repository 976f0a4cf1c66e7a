"""Reads of the opt-out registry. The gate that ingestion asks lives here.

Everything a practice is shown comes from its own entries only
(optouts_for_practice, optout_history_for); the gate and the opted-in feed
look at every practice's entries for a number, and show no practice anything.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

from django.db.models import Max, QuerySet

from optout.models import OptOut, OptOutChange, OptOutStatus
from sharedrecord.identity import identity_numbers_joined
from sharedrecord.models import Organisation, Patient


def optout_blocks(*, nhs_number: str) -> bool:
    """True when this NHS number has an active opt-out, so nothing may be stored for it.

    Any practice's active entry counts, on this number or on any number a
    standing merge or link joins to it (sharedrecord.identity): one person's
    opt-out wins whichever number a source uses. Call it inside the upsert
    transaction after taking the person's lock (sharedrecord.entries.patient_lock):
    the opt-out takes the same lock, so a concurrent opt-out always wins.
    """
    numbers = identity_numbers_joined(nhs_number=nhs_number)
    return OptOut.objects.active().filter(nhs_number__in=sorted(numbers)).exists()


def optouts_for_practice(*, practice: Organisation, search: str = "") -> QuerySet[OptOut]:
    """The practice's own entries, newest change first; search by NHS number."""
    entries = OptOut.objects.filter(practice=practice).order_by("-changed_at", "-id")
    digits = "".join(ch for ch in search if ch.isdigit())
    return entries.filter(nhs_number__startswith=digits) if digits else entries


def optout_history_for(*, optout: OptOut, practice: Organisation) -> QuerySet[OptOutChange]:
    """The changes to an entry that were recorded for this practice, newest first.

    An entry that came with a registration move keeps the earlier practice's
    changes for the governance record; the practice now holding it is not
    shown them.
    """
    return optout.changes.filter(practice=practice).select_related("practice", "recorded_by")


@dataclass(frozen=True)
class OptIn:
    """A person with no active opt-out left, and every organisation whose data was removed."""

    nhs_number: str
    opted_in_at: datetime.datetime
    source_ods: frozenset[str]


def optins_since(*, since: datetime.datetime) -> list[OptIn]:
    """People who opted back in since a time: partner systems re-send their data.

    A number is listed only when none of its entries is active any more, at
    the time its last entry was opted in; the organisations whose data was
    removed are those of all its entries (the practice that removed data may
    not be the last to opt the person back in).
    """
    reopened = (
        OptOut.objects.filter(status=OptOutStatus.OPTED_IN)
        .exclude(nhs_number__in=OptOut.objects.active().values("nhs_number"))
        .values("nhs_number")
        .annotate(opted_in_at=Max("changed_at"))
        .filter(opted_in_at__gte=since)
        .order_by("opted_in_at", "nhs_number")
    )
    rows = [(row["nhs_number"], row["opted_in_at"]) for row in reopened]
    sources: dict[str, set[str]] = {number: set() for number, _ in rows}
    for number, ods in OptOut.objects.filter(nhs_number__in=sources).values_list(
        "nhs_number", "purged_source_ods"
    ):
        sources[number].update(ods)
    return [OptIn(number, at, frozenset(sources[number])) for number, at in rows]


@dataclass(frozen=True)
class PersonIdentity:
    """Who an NHS number is in the record: enough to tell people apart, nothing clinical."""

    family_name: str
    given_names: str
    birth_date: datetime.date | None
    address: str
    postcode: str

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.given_names, self.family_name) if part)


@dataclass(frozen=True)
class Registration:
    """What the record says about a person's registration (the authoritative value).

    `patient_id` and `identity` are None when the record holds nobody with
    the number (never fed, or opted out and so removed); `registered_gp_ods`
    is then empty too: the registration is unknown.
    """

    patient_id: uuid.UUID | None
    registered_gp_ods: str
    identity: PersonIdentity | None


def optout_registration_of(*, nhs_number: str) -> Registration:
    """The person's registered practice and identity as the record holds them (not audited).

    Callers decide what may be shown (sharedrecord.access'
    optout_practice_may_record) and audit what they show.
    """
    patient = Patient.objects.filter(nhs_number=nhs_number).first()
    if patient is None:
        return Registration(None, "", None)
    identity = PersonIdentity(
        family_name=patient.family_name,
        given_names=patient.given_names,
        birth_date=patient.birth_date,
        address=patient.address,
        postcode=patient.postcode,
    )
    return Registration(patient.public_id, patient.registered_gp_ods, identity)
