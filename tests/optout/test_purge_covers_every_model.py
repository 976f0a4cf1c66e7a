"""An opt-out leaves nothing about the person in any model that holds personal data.

Every model of our apps must be listed below, either with the rows that would
hold the person's data or with the reason it holds none that the purge
should remove. A new model fails this test until someone decides which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.apps import apps
from django.db.models import Model, Q, QuerySet
from django.utils import timezone
from oauth2_provider.models import Application

from ingestion.models import FeedMessage, MatchQueueItem
from optout.models import OptOutRoute
from optout.services import optout_register, practice_of
from sharedrecord.basis import access_basis_record
from sharedrecord.clients import api_client_register
from sharedrecord.models import (
    AccessBasis,
    ApiAuthorization,
    BasisKind,
    Entry,
    Organisation,
    Patient,
    RemovedKey,
    SourceKey,
    User,
)
from sharedrecord.notifications.models import Delivery, Event, Notice, Subscription
from tests.factories import feed, make_credential, next_nhs_number, partner, small_bundle
from tests.notifications.feeds import builder, encounter

pytestmark = pytest.mark.django_db

HOLDS_PERSONAL_DATA: dict[str, Callable[[str], QuerySet[Model]]] = {
    "sharedrecord.Patient": lambda n: Patient.objects.filter(nhs_number=n),
    "sharedrecord.Entry": lambda n: Entry.objects.filter(patient__nhs_number=n),
    "sharedrecord.SourceKey": lambda n: SourceKey.objects.filter(patient__nhs_number=n),
    # What a source removed from the person's record, by its id (which can be a local number).
    "sharedrecord.RemovedKey": lambda n: RemovedKey.objects.filter(patient__nhs_number=n),
    "sharedrecord.AccessBasis": lambda n: AccessBasis.objects.filter(patient__nhs_number=n),
    # An application's EHR launch context names the person (its tokens read only them).
    "sharedrecord.ApiAuthorization": lambda n: ApiAuthorization.objects.filter(
        patient__nhs_number=n
    ),
    "ingestion.MatchQueueItem": lambda n: MatchQueueItem.objects.filter(
        Q(nhs_number_sent=n) | Q(resource__icontains=n)
    ),
    "notifications.Event": lambda n: Event.objects.filter(patient__nhs_number=n),
    "notifications.Notice": lambda n: Notice.objects.filter(patient__nhs_number=n),
    "notifications.Delivery": lambda n: Delivery.objects.filter(patient__nhs_number=n),
    "ingestion.FeedMessage": lambda n: FeedMessage.objects.filter(
        pk__in=[m.pk for m in FeedMessage.objects.all() if n.encode() in bytes(m.payload)]
    ),
}
HOLDS_NONE_TO_PURGE = {
    "sharedrecord.Organisation": "organisations, not people",
    "sharedrecord.PullSource": "where to ask organisations live; holds nothing about people",
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
    "sharedrecord.StaffIdentity": "single sign-on role profiles of staff: no patient",
    "sharedrecord.LaunchSystem": "clinical systems that may launch, and their public keys",
    "sharedrecord.LaunchTokenSeen": "ids (jti) of used launch tokens until they expire",
    "sharedrecord.RecordChange": "how often a person's entries changed, by internal id: a count",
    "ingestion.ParkedDigest": "an organisation's daily counts of parked entries by reason: no person",
    "sharedrecord.IdentityOperation": "the two NHS numbers a merge or link joined, kept so the "
    "opt-out goes on blocking both; the opt-out clears what it kept of the people",
    "notifications.NoticeLook": "when a member of staff last looked at their list: no person",
    "notifications.Subscription": "a partner system's subscription to a topic: no person",
}
OUR_APPS = {"sharedrecord", "ingestion", "optout", "audit", "notifications"}


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
    _withdrawn(credential, number)
    access_basis_record(
        viewer=practice_gp, patient_id=str(Patient.objects.get(nhs_number=number).public_id),
        session_key="session", kind=BasisKind.DIRECT_CARE,
        claimed_relationship="The person's GP, seen at the practice today",
    )  # fmt: skip
    issued = api_client_register(
        name="Ward app", grant="authorization-code", redirect_uris="https://app.example.test/cb"
    )
    ApiAuthorization.objects.create(
        user=practice_gp, application=Application.objects.get(client_id=issued.client_id),
        code_hash="0" * 64, auth_hash="x", scope="launch/patient patient/*.read",
        authorized_at=timezone.now(), patient=Patient.objects.get(nhs_number=number),
    )  # fmt: skip
    _told_of_an_admission(number, practice, practice_gp)
    for label, rows in HOLDS_PERSONAL_DATA.items():
        assert rows(number).exists(), f"the test set-up left {label} empty"

    optout_register(
        nhs_number=number, practice=practice_of(practice_gp),
        route=OptOutRoute.PRACTICE_REQUEST, recorded_by=practice_gp,
    )  # fmt: skip

    left = {label: rows(number).count() for label, rows in HOLDS_PERSONAL_DATA.items()}
    assert left == dict.fromkeys(HOLDS_PERSONAL_DATA, 0)


def _told_of_an_admission(number: str, practice: Organisation, practice_gp: User) -> None:
    """A hospital's admission of the person, the practice told of it in-app and by its system."""
    hospital = builder(number, "ZAC01", "adm").add("Encounter", encounter("IMP", "in-progress"))
    feed(make_credential(partner("ZAC01"))[0], hospital.bundle())
    event = Event.objects.get(patient__nhs_number=number, kind="admission")
    now = timezone.now()
    Notice.objects.create(event=event, patient=event.patient, organisation=practice,
                          relationships=["registered"], created_at=now)  # fmt: skip
    subscription = Subscription.objects.create(
        owner=practice_gp, organisation=practice, client_id="test", kind="admission",
        endpoint="https://receiver.example/hook", content="id-only", secret="s" * 64,
        status="active", created_at=now,
    )  # fmt: skip
    Delivery.objects.create(subscription=subscription, event=event, patient=event.patient,
                            event_number=1, next_attempt_at=now, created_at=now)  # fmt: skip


def _withdrawn(credential: Any, number: str) -> None:
    """The practice sends a diagnosis as entered in error before ever filing it (remembered)."""
    withdrawn = small_bundle(number, key="w")
    condition = withdrawn["entry"][1]["resource"]
    condition["meta"] = {"lastUpdated": "2099-01-01T00:00:00Z"}
    condition["verificationStatus"] = {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
        "code": "entered-in-error"}]}  # fmt: skip
    assert feed(credential, withdrawn).status == "done"
