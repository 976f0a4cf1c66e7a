"""The combined record's tables: organisations, staff, people, entries, bases, consents."""

from __future__ import annotations

import datetime
import re
import uuid
from typing import ClassVar

from django.contrib.auth.models import AbstractUser, UserManager
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper
from django.utils import timezone

from sharedrecord import fhirjson
from sharedrecord.presentation.dates import death_of
from sharedrecord.sealing import SealedTextField


class OrganisationKind(models.TextChoices):
    GP_PRACTICE = "gp-practice", "GP practice"
    ACUTE = "acute", "Acute hospital trust"
    COMMUNITY = "community", "Community health services"
    MENTAL_HEALTH = "mental-health", "Mental health trust"
    SOCIAL_CARE = "social-care", "Adult social care (local authority)"
    PHARMACY = "pharmacy", "Community pharmacy"
    # A PDS-like demographics service: the authority on a person's registered
    # GP practice (docs/architecture.md rule 6: facts have authorities). It sends Patient resources
    # and holds no clinical record.
    REGISTRATION_AUTHORITY = "registration-authority", "Registration authority (demographics)"
    OTHER = "other", "Other"


class OrganisationQuerySet(models.QuerySet["Organisation"]):
    def with_active_agreement(self, on: datetime.date | None = None) -> OrganisationQuerySet:
        """Organisations whose data sharing agreement covers the given day (default today)."""
        day = on or timezone.localdate()
        return self.filter(dsa_start__isnull=False, dsa_start__lte=day).filter(
            Q(dsa_end__isnull=True) | Q(dsa_end__gte=day)
        )


class Organisation(models.Model):
    """A health or care organisation, identified by its ODS code."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    ods_code = models.CharField(
        "ODS code",
        max_length=12,
        unique=True,
        help_text="Organisation Data Service code, upper case (for example A81001).",
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=24, choices=OrganisationKind.choices)
    dsa_start = models.DateField(
        "data sharing agreement start",
        null=True,
        blank=True,
        help_text="Blank until the organisation has signed the data sharing agreement.",
    )
    dsa_end = models.DateField(
        "data sharing agreement end",
        null=True,
        blank=True,
        help_text="Blank while the agreement runs without an end date.",
    )
    phone = models.CharField(
        "phone number",
        max_length=40,
        blank=True,
        help_text="The number staff call about a patient (a GP practice's is in the banner).",
    )
    last_feed_at = models.DateTimeField(
        "last sent data",
        null=True,
        blank=True,
        editable=False,
        help_text="When a feed message from this organisation was last processed.",
    )
    feed_expected_interval = models.DurationField(
        "expected feed interval",
        null=True,
        blank=True,
        help_text=(
            "How often this organisation's feeds normally send data (for example 1:00:00 for "
            "hourly). Once nothing has arrived for longer, its data is shown as possibly out "
            "of date and its feed as late. Blank: not monitored."
        ),
    )

    objects: ClassVar[OrganisationQuerySet] = OrganisationQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(dsa_end__isnull=True)
                | Q(dsa_start__isnull=False, dsa_end__gte=models.F("dsa_start")),
                name="organisation_dsa_end_after_start",
            ),
            models.CheckConstraint(
                condition=Q(ods_code__regex=r"^[A-Z0-9]{3,12}$"),
                name="organisation_ods_code_format",
            ),
        ]
        permissions = [
            ("manage_optouts", "Record opt-outs and opt-ins for this practice's patients"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.ods_code})"

    def clean(self) -> None:
        self.ods_code = self.ods_code.strip().upper()
        if self.dsa_end and not self.dsa_start:
            raise ValidationError({"dsa_end": "An agreement cannot end before it has started."})
        if self.dsa_end and self.dsa_start and self.dsa_end < self.dsa_start:
            raise ValidationError({"dsa_end": "The agreement must end on or after its start."})

    def feed_is_late(self, now: datetime.datetime) -> bool:
        """Whether a feed that normally sends data has been silent past its expected interval.

        Only an organisation with an expected interval that has sent something is
        ever late: one that never sent data has nothing of its own to be stale.
        """
        if self.feed_expected_interval is None or self.last_feed_at is None:
            return False
        return now - self.last_feed_at > self.feed_expected_interval

    def agreement_active(self, on: datetime.date | None = None) -> bool:
        """True when the data sharing agreement covers the given day (default today)."""
        day = on or timezone.localdate()
        if self.dsa_start is None or self.dsa_start > day:
            return False
        return self.dsa_end is None or self.dsa_end >= day


class StaffRole(models.TextChoices):
    """What a member of staff does, keyed to the National RBAC Database job roles.

    The national code of each role is in RBAC_JOB_ROLE_CODES; social care
    roles have no national code (the RBAC database covers NHS staff), so they
    carry a local one.
    """

    GP = "gp", "General practitioner"
    CLINICAL_PRACTITIONER = "clinical-practitioner", "Clinical practitioner (doctor)"
    NURSE = "nurse", "Nurse"
    HEALTH_PROFESSIONAL = "health-professional", "Allied health professional"
    PHARMACIST = "pharmacist", "Pharmacist"
    SOCIAL_WORKER = "social-worker", "Social worker"
    ADMIN_CLERK = "admin-clerk", "Registration and admin clerk"
    PRIVACY_OFFICER = "privacy-officer", "Privacy officer (information governance)"
    # The programme's team that takes objections by phone or e-mail and records
    # them on behalf of the person's registered practice (St Helens' route).
    OBJECTIONS_OFFICER = "objections-officer", "Objections officer (programme team)"
    # Decides the entries feeds parked (ingestion/workbench.py): the programme's
    # officers see every item, an organisation's the items its own feeds parked.
    DATA_QUALITY_OFFICER = "data-quality-officer", "Data quality officer"
    SYSTEM_ADMIN = "system-admin", "System administrator"
    # ---- operations (#26): the programme's team that watches the feeds and replays
    # failed messages; it sees ids, counts and reasons, never a record.
    FEED_OPERATOR = "feed-operator", "Feed operator (programme operations)"


RBAC_JOB_ROLE_CODES: dict[str, str] = {
    StaffRole.GP: "R0260",  # General Medical Practitioner
    StaffRole.CLINICAL_PRACTITIONER: "R8000",  # Clinical Practitioner Access Role
    StaffRole.NURSE: "R8001",  # Nurse Access Role
    StaffRole.HEALTH_PROFESSIONAL: "R8003",  # Health Professional Access Role
    StaffRole.PHARMACIST: "R8003",  # Health Professional Access Role (pharmacists)
    StaffRole.SOCIAL_WORKER: "LOCAL-SW",  # social care: no national RBAC job role
    StaffRole.ADMIN_CLERK: "R8008",  # Admin/Clinical Support Access Role
    StaffRole.PRIVACY_OFFICER: "R8014",  # Privacy Officer Access Role
    StaffRole.OBJECTIONS_OFFICER: "R8008",  # Admin/Clinical Support Access Role
    StaffRole.DATA_QUALITY_OFFICER: "R8008",  # Admin/Clinical Support Access Role
    StaffRole.SYSTEM_ADMIN: "R8015",  # Systems Support Access Role
    StaffRole.FEED_OPERATOR: "R8015",  # Systems Support Access Role
}

# Roles that read clinical content (the access policy narrows what each sees).
CLINICAL_ROLES = frozenset(
    {
        StaffRole.GP,
        StaffRole.CLINICAL_PRACTITIONER,
        StaffRole.NURSE,
        StaffRole.HEALTH_PROFESSIONAL,
        StaffRole.PHARMACIST,
        StaffRole.SOCIAL_WORKER,
    }
)


class User(AbstractUser):
    """A member of staff: belongs to one organisation and holds one role.

    Only a superuser made with `createsuperuser` may have no organisation.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.PROTECT,
        related_name="staff",
        null=True,
        blank=True,
    )
    role = models.CharField(max_length=32, choices=StaffRole.choices, blank=True)

    objects: ClassVar[UserManager[User]] = UserManager()  # type: ignore[assignment]

    class Meta(AbstractUser.Meta):  # type: ignore[name-defined,misc]
        constraints = [
            models.CheckConstraint(
                condition=Q(is_superuser=True) | Q(organisation__isnull=False, role__gt=""),
                name="user_staff_have_organisation_and_role",
            ),
        ]

    def clean(self) -> None:
        super().clean()
        if not self.is_superuser and (self.organisation_id is None or not self.role):
            raise ValidationError("Staff must belong to an organisation and hold a role.")

    @property
    def rbac_code(self) -> str:
        return RBAC_JOB_ROLE_CODES.get(self.role, "")


class RecordSection(models.TextChoices):
    """Record sections, after the PRSB Core Information Standard headings."""

    DEMOGRAPHICS = "demographics", "Demographics"
    CONTACTS = "contacts", "Contacts and care team"
    ALERTS = "alerts", "Alerts and flags"
    ALLERGIES = "allergies", "Allergies and adverse reactions"
    MEDICATIONS = "medications", "Medications"
    PROBLEMS = "problems", "Problems and diagnoses"
    RESULTS = "results", "Test results"
    ENCOUNTERS = "encounters", "Encounters"
    REFERRALS = "referrals", "Referrals"
    APPOINTMENTS = "appointments", "Appointments"
    CARE_PLANS = "care-plans", "Care plans"
    DOCUMENTS = "documents", "Documents"
    PROCEDURES = "procedures", "Procedures"
    IMMUNISATIONS = "immunisations", "Immunisations"


class Patient(models.Model):
    """One person, keyed by a valid NHS number; demographics merged from the sources.

    The shown demographics follow a precedence: the registered GP practice's
    Patient resource first, then the most recently updated source.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    nhs_number = models.CharField("NHS number", max_length=10, unique=True)
    family_name = models.CharField(max_length=200, blank=True)
    given_names = models.CharField(max_length=200, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    gender = models.CharField(max_length=16, blank=True)
    postcode = models.CharField(max_length=10, blank=True)
    address = models.CharField(max_length=400, blank=True)
    deceased = models.BooleanField(default=False)
    # The chosen source's deceasedDateTime exactly as sent ("1989", "1989-03",
    # "1989-03-03" or a date-time with its offset): its precision is kept.
    deceased_at = models.CharField(max_length=40, blank=True)
    # Set only by the registration authority or the practice's own feed
    # (access.registration_asserted); every rule that hangs off it reads this.
    registered_gp_ods = models.CharField(max_length=12, blank=True)
    demographics_source_ods = models.CharField(max_length=12, blank=True)
    # Fields (name, birth-date, gender, address) on which another source
    # holds a different value than the one shown.
    demographics_disputed = ArrayField(models.CharField(max_length=16), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(nhs_number__regex=r"^[0-9]{10}$"), name="patient_nhs_number_digits"
            ),
        ]
        indexes = [
            models.Index(Upper("family_name"), "birth_date", name="patient_name_dob"),
        ]

    def __str__(self) -> str:
        # Never the NHS number or name: this string can end up in logs.
        return f"Patient {self.public_id}"

    @property
    def disputed_labels(self) -> list[str]:
        """The disputed fields as the page says them ("address", "date of birth")."""
        labels = {"birth-date": "date of birth", "death": "record of death"}
        return [labels.get(field, field) for field in self.demographics_disputed]

    @property
    def deceased_on(self) -> str:
        """The date of death as the banner shows it, with its precision ("" when not sent)."""
        return death_of(self.deceased_at, self.birth_date).date

    @property
    def age_at_death(self) -> str:
        """The age at death: "42", or "41 or 42" when the dates allow both; "" if not known."""
        return death_of(self.deceased_at, self.birth_date).age

    @property
    def age_years(self) -> int | None:
        if self.birth_date is None:
            return None
        today = timezone.localdate()
        born = self.birth_date
        return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


class SourceKey(models.Model):
    """Which person a source's resource belongs to, looked up before the person is known.

    Entry is distributed by patient (a Citus move shards it on patient_id), so
    its unique key includes the patient. This small table keeps the global
    uniqueness of (source organisation, resource type, source id) that a feed
    needs to find an existing resource; it holds no clinical content.
    """

    source_org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    resource_type = models.CharField(max_length=40)
    source_id = models.CharField(max_length=64)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="source_keys")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source_org", "resource_type", "source_id"], name="source_key_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.source_id}"


class RemovedKey(models.Model):
    """A source's resource it sent as entered in error, with that version's stamps.

    So that an older version of it arriving later (a retry, a message processed
    out of order) is not stored again: entries_upsert holds it STALE; a newer
    one is stored and the removal forgotten. Removals dated only by their
    message (DELETE, HL7 v2 A11 and A40) are not kept (entries.entry_remove).
    Holds no clinical content. Linked to the person it was for: it moves with
    them in a merge and goes with their record when they opt out (a source id
    can be a local patient number). Like SourceKey it is looked up by the
    source's key before the person is known, so its unique key leaves out the
    person (a small table, not distributed by patient under Citus).
    """

    source_org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    resource_type = models.CharField(max_length=40)
    source_id = models.CharField(max_length=64)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    version_id = models.CharField(max_length=64, blank=True)
    source_updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source_org", "resource_type", "source_id"], name="removed_key_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type}/{self.source_id} (removed)"


class IdentityKind(models.TextChoices):
    # One source's records of a person (HL7 A40), or every source's, move to another person.
    MERGE = "merge", "Merge"
    # Two NHS numbers are recorded as one person; nothing moves (the opt-out gate joins them).
    LINK = "link", "Link"


class IdentityOperation(models.Model):
    """A recorded merge or link of two people: what moved, so it can be undone exactly.

    `snapshot` holds what the undo needs (sharedrecord/identity.py): each
    patient's row as it was, the ids of the entries and source keys that
    moved, and whether the merge created the survivor or removed the merged
    person. While an operation stands (not undone) the two NHS numbers are one
    person to the opt-out gate: an opt-out on either blocks both.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=8, choices=IdentityKind.choices)
    from_nhs_number = models.CharField(max_length=10)
    to_nhs_number = models.CharField(max_length=10)
    # The source whose records moved (an A40 moves only its sender's); none: every source's.
    source_org = models.ForeignKey(
        "Organisation", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    feed_message_id = models.UUIDField(null=True, blank=True)
    actor = models.CharField(max_length=150)
    reason = models.CharField(max_length=500, blank=True)
    # An opt-out on either number: nothing moved, the survivor's record was removed.
    blocked = models.BooleanField(default=False)
    # Holds the rows a merge ends (retire) and both people's: decimals as sent (fhirjson).
    snapshot = models.JSONField(default=dict, encoder=fhirjson.Encoder, decoder=fhirjson.Decoder)
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.CharField(max_length=150, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["from_nhs_number"], condition=Q(undone_at__isnull=True),
                name="identity_from_standing",
            ),
            models.Index(
                fields=["to_nhs_number"], condition=Q(undone_at__isnull=True),
                name="identity_to_standing",
            ),
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"Identity {self.kind} {self.public_id}"


# The types access.relationships_of reads (a test keeps the two lists the same).
RELATIONSHIP_INDEX_TYPES = [
    "Appointment", "CarePlan", "CareTeam", "Condition", "Encounter", "Flag", "ServiceRequest",
]  # fmt: skip


class Entry(models.Model):
    """One source resource in the combined record: the FHIR R4 JSON plus typed columns."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="entries")
    resource_type = models.CharField(max_length=40)
    section = models.CharField(max_length=20, choices=RecordSection.choices)
    source_org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    source_system = models.CharField(max_length=100, blank=True)
    source_id = models.CharField(max_length=64)
    version_id = models.CharField(max_length=64, blank=True)
    source_updated_at = models.DateTimeField(null=True, blank=True)
    effective_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=40, blank=True)
    code_system = models.CharField(max_length=200, blank=True)
    code = models.CharField(max_length=64, blank=True)
    code_display = models.CharField(max_length=400, blank=True)
    sensitivity = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    # "system|code" of every coding in the resource: the access policy's
    # sensitive code lists match any of them.
    codes = ArrayField(models.CharField(max_length=300), default=list, blank=True)
    # Decimals as sent (5.10 stays 5.10): sharedrecord.fhirjson reads and writes them.
    resource = models.JSONField(encoder=fhirjson.Encoder, decoder=fhirjson.Decoder)
    content_hash = models.CharField(max_length=64)
    received_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    feed_message_id = models.UUIDField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "source_org", "resource_type", "source_id"],
                name="entry_source_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["patient", "section", "effective_at"], name="entry_section"),
            models.Index(fields=["patient", "resource_type", "updated_at"], name="entry_type"),
            models.Index(fields=["patient", "updated_at", "id"], name="entry_paging"),
            # The FHIR API's stable paging: arrival order, then id (fhir_read.py).
            models.Index(fields=["patient", "received_at", "public_id"], name="entry_api_paging"),
            # The relationships the feeds show (access.relationships_of, asked on
            # every read): an organisation's own entries of those types, newest
            # last, answered from the index alone. Results are most of a record
            # and are not in it.
            models.Index(
                fields=["patient", "source_org", "resource_type", "effective_at"],
                include=["status", "updated_at"],
                condition=models.Q(resource_type__in=RELATIONSHIP_INDEX_TYPES),
                name="entry_relationship",
            ),
        ]
        verbose_name_plural = "entries"

    def __str__(self) -> str:
        return f"{self.resource_type} entry {self.public_id}"


class BasisKind(models.TextChoices):
    """Why a member of staff may read this person's record now."""

    DIRECT_CARE = "direct-care", "Directly involved in the person's care (implied consent)"
    CONSENT = "consent", "The person gave permission to view their record now"
    BREAK_GLASS = "break-glass", "Emergency access (break glass)"


class OverrideReason(models.TextChoices):
    """HL7 v3 ActConsentInformationAccessOverrideReason: why consent could not be had."""

    OVRER = "OVRER", "Emergency treatment"
    OVRPJ = "OVRPJ", "Professional judgement"
    OVRPS = "OVRPS", "Public safety"
    OVRTPS = "OVRTPS", "Third party safety"


class RecordChange(models.Model):
    """How many times a person's entries have changed: moved on by the database, not by us.

    Triggers on sharedrecord_entry (migration 0010) add one for every
    statement that inserts, updates or deletes a person's entries, whatever
    wrote them, so what is kept about a record (record._source_counts) is
    never read for a record that has changed since. No code writes it.
    """

    patient_id = models.BigIntegerField(primary_key=True)
    changed = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"record of person {self.patient_id}: changed {self.changed} times"


class AccessBasis(models.Model):
    """A member of staff's recorded basis for reading one person's record.

    It holds for this user, this person and this signed-in session until it
    expires; then the pages ask again. Self-claimed relationships and
    emergency access are put in front of the privacy officer (the audit
    trail carries the same facts, and outlives this row).
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    session_key_hash = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=BasisKind.choices)
    relationships = ArrayField(models.CharField(max_length=32), default=list, blank=True)
    self_claimed = models.BooleanField(default=False)
    reason_code = models.CharField(max_length=8, choices=OverrideReason.choices, blank=True)
    reason_text = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["patient", "user", "expires_at"], name="access_basis_current"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="break-glass") | Q(reason_code__gt=""),
                name="access_basis_break_glass_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("created_at")),
                name="access_basis_expires_after_created",
            ),
        ]

    def __str__(self) -> str:
        return f"Access basis {self.public_id}"


class ApiAuthorizationEnd(models.TextChoices):
    """Why a member of staff's authorization of an application ended (its tokens with it)."""

    SIGNED_OUT = "signed-out", "Signed out"
    SESSION_ENDED = "session-ended", "The session that gave consent ended"
    PASSWORD_CHANGED = "password-changed", "The password changed"
    DEACTIVATED = "deactivated", "The account was deactivated"
    CODE_REUSED = "code-reused", "Its authorization code was presented again"
    REVOKED = "revoked", "The application revoked a token"
    EXPIRED = "expired", "It reached its lifetime (API_REFRESH_TOKEN_SECONDS)"


class ApiAuthorization(models.Model):
    """A member of staff's consent to an application, and the chain of tokens it led to.

    Written when the member of staff allows the application (the code is
    issued) and bound to the refresh token family when the code is
    exchanged. Every token of the chain holds only while the session that
    gave consent exists, the user is active with the same password, and
    the consent is younger than API_REFRESH_TOKEN_SECONDS (sharedrecord/oauth/consent.py).
    Once ended it stays ended: reactivating the account brings nothing back.
    The session is the database session row (Django's default session
    engine): deleting it (sign-out, a password change cycling the key, or
    clearing expired sessions) sets it to NULL, which ends the chain.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    application = models.ForeignKey(
        "oauth2_provider.Application", on_delete=models.CASCADE, related_name="+"
    )
    session = models.ForeignKey(
        "sessions.Session", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    code_hash = models.CharField(max_length=64, unique=True)  # sha256 of the code
    # The user's session auth hash at consent (an HMAC of the password hash):
    # it changes whenever the password does, however it is changed.
    auth_hash = models.CharField(max_length=128)
    scope = models.TextField()
    authorized_at = models.DateTimeField()
    token_family = models.UUIDField(null=True, blank=True, unique=True)
    # EHR launch context (`launch`, `launch/patient` scopes): the person open in the
    # session that gave consent; the tokens' `patient/` scopes then read only them.
    patient = models.ForeignKey(
        Patient, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, choices=ApiAuthorizationEnd.choices, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["user"], condition=Q(ended_at__isnull=True), name="api_authorization_live"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True, end_reason="")
                | Q(ended_at__isnull=False, end_reason__gt=""),
                name="api_authorization_end_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"API authorization {self.public_id}"


def is_uuid(value: str) -> bool:
    """True for a well-formed UUID (public ids); anything else cannot name a row."""
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------ staff identity (single sign-on)


class StaffIdentity(models.Model):
    """One role profile of a person known to an OpenID provider, and the account it signs in as.

    A person with several role profiles (CIS2's `nhsid_nrbac_roles`) has one
    account per profile, each with only that profile's organisation and role,
    so a session never holds more than the profile chosen and every audit
    event names it (the account's username carries the profile's id).
    Provisioned on first sign-in, updated on every sign-in
    (sharedrecord/sso/signin.py).
    """

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="staff_identity")
    issuer = models.CharField(max_length=300)
    subject = models.CharField(max_length=255)
    role_profile_id = models.CharField(max_length=100)
    role_code = models.CharField(max_length=100, blank=True)
    last_signed_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "subject", "role_profile_id"], name="staff_identity_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"Staff identity {self.pk}"


# ------------------------------------------------------------------ launch in context


class LaunchSystem(models.Model):
    """A clinical system allowed to open the record in context with a signed launch.

    Registered with `manage.py launch_system_register`: its `iss`, its public keys
    (a JWKS URL, fetched and cached, or a JWKS kept here from a file), and, when it
    serves one organisation only, that organisation (a launch for another is refused).
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    issuer = models.CharField(max_length=300, unique=True)
    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    jwks_url = models.URLField(max_length=500, blank=True)
    jwks = models.JSONField(null=True, blank=True)
    # The assurance its users signed in with (3: smartcard); a launch's own acr may lower it.
    assurance_level = models.PositiveSmallIntegerField(default=3)
    # SMART App Launch (EHR launch): the EHR's FHIR base URL (the launch's `iss`) and our
    # client registration with its authorization server; `issuer` and the keys are then
    # those of the ID tokens it issues.
    smart_fhir_base = models.URLField(max_length=500, blank=True)
    smart_client_id = models.CharField(max_length=200, blank=True)
    smart_client_secret = SealedTextField(blank=True)  # sealed at rest (sealing.py)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["smart_fhir_base"],
                condition=Q(smart_fhir_base__gt=""),
                name="launch_system_smart_fhir_base_unique",
            ),
            models.CheckConstraint(
                condition=(Q(jwks_url__gt="") & Q(jwks__isnull=True))
                | (Q(jwks_url="") & Q(jwks__isnull=False)),
                name="launch_system_one_key_source",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class LaunchTokenSeen(models.Model):
    """A launch token's `jti`, kept until the token expires, so it opens the record once."""

    issuer = models.CharField(max_length=300)
    jti = models.CharField(max_length=200)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "jti"], name="launch_token_seen_once"),
        ]
        indexes = [models.Index(fields=["expires_at"], name="launch_token_seen_expiry")]

    def __str__(self) -> str:
        return f"Launch token {self.pk}"


# ------------------------------------------------------------------ live pull sources (issue 25)


class PullMode(models.TextChoices):
    """How an organisation takes part: it pushes feeds, answers live pulls, or both."""

    PUSH_ONLY = "push-only", "Push only (feeds; never pulled from)"
    PULL_ONLY = "pull-only", "Pull only (asked live; its feeds are refused)"
    BOTH = "both", "Both (feeds, and asked live)"


class PullAuth(models.TextChoices):
    CLIENT_SECRET = "client-secret", "Client credentials with a client secret"
    PRIVATE_KEY_JWT = "private-key-jwt", "Client credentials with a private-key JWT"


class PullSearch(models.TextChoices):
    """How a source is asked for a person, after `Patient?identifier=` found them there."""

    EVERYTHING = "everything", "Patient/<id>/$everything (another shared care record)"
    TYPE_SEARCH = "type-search", "One search per resource type (<Type>?patient=<id>)"


def _default_pull_types() -> list[str]:
    return ["AllergyIntolerance", "Condition", "MedicationStatement", "Observation"]


class PullSource(models.Model):
    """One organisation's FHIR R4 endpoint, asked live when a record is opened.

    The secret (a client secret, or a PEM private key for private-key JWT) is
    never stored here: `secret_name` names the environment variable that holds
    it (or `<name>_FILE`, a mounted secret), read like the deployment's other
    secrets (sharedrecord/env.py, env_secret).
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.OneToOneField(
        Organisation, on_delete=models.PROTECT, related_name="pull_source"
    )
    mode = models.CharField(max_length=12, choices=PullMode.choices, default=PullMode.BOTH)
    base_url = models.URLField(
        "FHIR R4 base URL", max_length=300, help_text="For example https://epr.example/fhir/R4"
    )
    token_url = models.URLField("OAuth2 token URL", max_length=300)
    auth = models.CharField(max_length=16, choices=PullAuth.choices, default=PullAuth.CLIENT_SECRET)
    client_id = models.CharField(max_length=200)
    secret_name = models.CharField(
        max_length=100,
        help_text="Environment variable holding the client secret or PEM private key "
        "(or NAME_FILE naming a mounted file). Upper case letters, digits and _.",
    )
    key_id = models.CharField("key id (kid)", max_length=100, blank=True)
    scope = models.CharField(max_length=300, blank=True, default="system/*.read")
    search = models.CharField(
        max_length=12, choices=PullSearch.choices, default=PullSearch.EVERYTHING
    )
    resource_types = ArrayField(
        models.CharField(max_length=40), default=_default_pull_types, blank=True,
        help_text="The types it is asked for (type-search), or kept from $everything.",
    )  # fmt: skip
    timeout_seconds = models.DecimalField(
        max_digits=4, decimal_places=1, default=3,
        help_text="How long a record page waits for this source (0.1 to 30 seconds).",
    )  # fmt: skip
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organisation__name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(timeout_seconds__gte=0.1, timeout_seconds__lte=30),
                name="pull_source_timeout_bounded",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organisation.name} ({self.get_mode_display()})"

    def clean(self) -> None:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,99}", self.secret_name or ""):
            raise ValidationError(
                {"secret_name": "Name an environment variable: upper case letters, digits, _."}
            )
        if self.auth == PullAuth.PRIVATE_KEY_JWT and not self.key_id:
            raise ValidationError({"key_id": "A private-key JWT needs the key id (kid)."})
        for name in self.resource_types:
            if not re.fullmatch(r"[A-Z][A-Za-z]{1,39}", name):
                raise ValidationError({"resource_types": "Give FHIR resource type names."})

    @property
    def pulled(self) -> bool:
        return self.active and self.mode != PullMode.PUSH_ONLY
