"""An opt-out leaves nothing about the person in any model that holds personal data.

Every model of our apps must be listed below, either with the rows that would
hold the person's data or with the reason it holds none that the purge
should remove. A new model fails this test until someone decides which.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.apps import apps
from django.db.models import Model, Q, QuerySet

from ingestion.models import FeedMessage, MatchQueueItem
from optout.models import OptOutRoute
from optout.services import optout_register, practice_of
from sharedrecord.basis import access_basis_record
from sharedrecord.models import AccessBasis, BasisKind, Entry, Patient, SourceKey
from tests.factories import feed, make_credential, next_nhs_number, small_bundle

pytestmark = pytest.mark.django_db

HOLDS_PERSONAL_DATA: dict[str, Callable[[str], QuerySet[Model]]] = {
    "sharedrecord.Patient": lambda n: Patient.objects.filter(nhs_number=n),
    "sharedrecord.Entry": lambda n: Entry.objects.filter(patient__nhs_number=n),
    "sharedrecord.SourceKey": lambda n: SourceKey.objects.filter(patient__nhs_number=n),
    "sharedrecord.AccessBasis": lambda n: AccessBasis.objects.filter(patient__nhs_number=n),
    "ingestion.MatchQueueItem": lambda n: MatchQueueItem.objects.filter(
        Q(nhs_number_sent=n) | Q(resource__icontains=n)
    ),
    "ingestion.FeedMessage": lambda n: FeedMessage.objects.filter(
        pk__in=[m.pk for m in FeedMessage.objects.all() if n.encode() in bytes(m.payload)]
    ),
}
HOLDS_NONE_TO_PURGE = {
    "sharedrecord.Organisation": "organisations, not people",
    "sharedrecord.User": "staff accounts",
    "ingestion.FeedCredential": "partner system credentials",
    "ingestion.ImportCheckpoint": "how far an import got through a file: counts, line numbers "
    "and reason codes, never content",
    "optout.OptOut": "the registry entry itself: it must remain to keep blocking",
    "optout.OptOutChange": "who changed the registry and when; no health data",
    "audit.AuditEvent": "the governance record of past access, kept by design; no clinical content",
    "audit.AuditChainHead": "hash chain heads",
    "audit.AuditEventHolder": "the record holders' index of the trail: ODS codes, times, ids",
    "audit.AccessReview": "a governance finding on a past access, kept like the trail it reviews",
    "audit.AuditCheckpoint": "signed hash-chain heads: stripe, ids, hashes, counts",
    "sharedrecord.ApiAuthorization": "a member of staff's API consent and its session: no patient",
    "sharedrecord.RecordChange": "how often a person's entries changed, by internal id: a count",
    "ingestion.ParkedDigest": "an organisation's daily counts of parked entries by reason: no person",
    "sharedrecord.IdentityOperation": "the two NHS numbers a merge or link joined, kept so the "
    "opt-out goes on blocking both; the opt-out clears what it kept of the people",
}
OUR_APPS = {"sharedrecord", "ingestion", "optout", "audit"}


def test_every_model_is_classified() -> None:
    ours = {m._meta.label for m in apps.get_models() if m._meta.app_label in OUR_APPS}
    assert ours == set(HOLDS_PERSONAL_DATA) | set(HOLDS_NONE_TO_PURGE)


def test_after_an_opt_out_no_model_holds_the_persons_data(practice, practice_gp) -> None:
    credential, _ = make_credential(practice)
    number = next_nhs_number()
    feed(credential, small_bundle(number))
    conflicting = small_bundle(number, key="c")
    conflicting["entry"][0]["resource"]["birthDate"] = "1990-01-01"
    feed(credential, conflicting)
    feed(credential, small_bundle(number, key="waiting"), process=False)
    access_basis_record(
        viewer=practice_gp, patient_id=str(Patient.objects.get(nhs_number=number).public_id),
        session_key="session", kind=BasisKind.DIRECT_CARE,
        claimed_relationship="The person's GP, seen at the practice today",
    )  # fmt: skip
    for label, rows in HOLDS_PERSONAL_DATA.items():
        assert rows(number).exists(), f"the test set-up left {label} empty"

    optout_register(
        nhs_number=number, practice=practice_of(practice_gp),
        route=OptOutRoute.PRACTICE_REQUEST, recorded_by=practice_gp,
    )  # fmt: skip

    left = {label: rows(number).count() for label, rows in HOLDS_PERSONAL_DATA.items()}
    assert left == dict.fromkeys(HOLDS_PERSONAL_DATA, 0)
