"""Who may see which patient, and which of their entries: the one module that decides.

STYLE.md section 3. The record pages and the FHIR read API both call this
module; neither re-implements any part of it. The rules, each on its own line
below and each tested:

1. Only staff in a clinical or care role, of an organisation whose data
   sharing agreement is active, find or read records (viewer_may_search).
2. Only data from organisations with an active agreement is shown.
3. The role x organisation-kind table (access_policy.toml) decides sections.
4. Restricted items (labels or sensitive codes) are withheld unless the
   viewer's role may see them, or emergency access unlocks them for the
   role; very restricted items only reach the organisation that sent them.
   Withheld items are counted, never described.
5. Reading needs a recorded basis for this user, person and session
   (access_basis_current); the feeds' relationships are shown beside it.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from sharedrecord.exceptions import PatientNotFound
from sharedrecord.models import (
    CLINICAL_ROLES,
    AccessBasis,
    BasisKind,
    Entry,
    Organisation,
    OrganisationKind,
    Patient,
    RecordSection,
    StaffRole,
    User,
)

ALL_SECTIONS = frozenset(RecordSection.values)


# ------------------------------------------------------------------ the policy table


@dataclass(frozen=True)
class VisibilityRow:
    role: str
    organisation_kind: str  # "*" for any
    sections: frozenset[str]


@dataclass(frozen=True)
class SensitivityRules:
    restricted_labels: frozenset[str]
    very_restricted_labels: frozenset[str]
    sensitive_codes: frozenset[str]
    restricted_roles: frozenset[str]
    break_glass_unlocks_roles: frozenset[str]


@dataclass(frozen=True)
class PolicyTable:
    rows: tuple[VisibilityRow, ...]
    sensitivity: SensitivityRules

    def sections_for(self, role: str, organisation_kind: str) -> frozenset[str]:
        """The first matching row's sections; none for a role the table does not name."""
        for row in self.rows:
            if row.role == role and row.organisation_kind in ("*", organisation_kind):
                return row.sections
        return frozenset()


def _strings(value: Any, where: str, allowed: frozenset[str] | None = None) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImproperlyConfigured(f"Access policy: {where} must be a list of strings.")
    unknown = set(value) - allowed if allowed is not None else set()
    if unknown:
        raise ImproperlyConfigured(f"Access policy: {where} names unknown {sorted(unknown)}.")
    return frozenset(value)


@functools.cache
def policy_table_load(path: Path) -> PolicyTable:
    """Read and check the TOML table; a mistake stops the process instead of guessing."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ImproperlyConfigured(f"Access policy {path} cannot be read: {exc}") from exc
    rows = []
    for i, row in enumerate(raw.get("visibility", [])):
        role, kind, sections = row.get("role"), row.get("organisation_kind"), row.get("sections")
        if role not in CLINICAL_ROLES:
            raise ImproperlyConfigured(f"Access policy row {i}: role {role!r} reads no records.")
        if kind != "*" and kind not in OrganisationKind.values:
            raise ImproperlyConfigured(f"Access policy row {i}: unknown kind {kind!r}.")
        chosen = (
            ALL_SECTIONS
            if sections == "all"
            else _strings(sections, f"row {i} sections", ALL_SECTIONS)
        )
        # Demographics identify the person the reader asked for; every role sees them.
        rows.append(VisibilityRow(role, kind, chosen | {RecordSection.DEMOGRAPHICS.value}))
    s = raw.get("sensitivity", {})
    roles = frozenset(StaffRole.values)
    rules = SensitivityRules(
        restricted_labels=_strings(s.get("restricted_labels", []), "restricted_labels"),
        very_restricted_labels=_strings(
            s.get("very_restricted_labels", []), "very_restricted_labels"
        ),
        sensitive_codes=_strings(s.get("sensitive_codes", []), "sensitive_codes"),
        restricted_roles=_strings(s.get("restricted_roles", []), "restricted_roles", roles),
        break_glass_unlocks_roles=_strings(
            s.get("break_glass_unlocks_roles", []), "break_glass_unlocks_roles", roles
        ),
    )
    return PolicyTable(tuple(rows), rules)


def policy_table() -> PolicyTable:
    return policy_table_load(Path(settings.ACCESS_POLICY_FILE))


# ------------------------------------------------------------------ finding a person


def viewer_may_search(viewer: User) -> bool:
    """Staff in a clinical or care role, of an organisation whose agreement is active."""
    organisation = viewer.organisation
    return (
        viewer.is_active
        and viewer.role in CLINICAL_ROLES
        and organisation is not None
        and organisation.agreement_active()
    )


def patients_visible_to(viewer: User) -> QuerySet[Patient]:
    """Every person this viewer may find. Opted-out people have no record, so never appear."""
    if not viewer_may_search(viewer):
        return Patient.objects.none()
    return Patient.objects.all()


def patient_get_for_viewer(*, viewer: User, patient_id: str) -> Patient:
    """One person by public id; "does not exist" and "not yours" are the same answer."""
    patient = patients_visible_to(viewer).filter(public_id=patient_id).first()
    if patient is None:
        raise PatientNotFound("No shared care record is available for this person.")
    return patient


# ------------------------------------------------------------------ relationships and basis


@dataclass(frozen=True)
class Relationship:
    """What the feeds show links the viewer's organisation to the person."""

    kind: str  # registered, encounter, referral, appointment, care-team
    description: str
    on: datetime.date | None = None


# Resource types that show a care relationship, and how the page names them.
RELATIONSHIP_TYPES = {
    "Encounter": ("encounter", "recorded an encounter"),
    "ServiceRequest": ("referral", "made a referral"),
    "Appointment": ("appointment", "holds an appointment"),
    "CareTeam": ("care-team", "has the person in a care team"),
}


def relationships_of(*, viewer: User, patient: Patient) -> list[Relationship]:
    """Relationships between the viewer's organisation and the person, from the feeds.

    Registered practice; an encounter, referral, appointment or care team from
    the organisation within RELATIONSHIP_DAYS (appointments ahead count too);
    a referral addressed to the organisation.
    """
    organisation = viewer.organisation
    if organisation is None:
        return []
    found: list[Relationship] = []
    if patient.registered_gp_ods and patient.registered_gp_ods == organisation.ods_code:
        found.append(Relationship("registered", "The person is registered with your practice."))
    since = timezone.now() - datetime.timedelta(days=settings.RELATIONSHIP_DAYS)
    recent = (
        Entry.objects.filter(
            patient=patient, source_org=organisation, resource_type__in=RELATIONSHIP_TYPES
        )
        .filter(Q(effective_at__gte=since) | Q(resource_type="CareTeam", status="active"))
        .values("resource_type")
        .annotate(latest=Max("effective_at"))
        .order_by("resource_type")
    )
    for row in recent:
        kind, verb = RELATIONSHIP_TYPES[row["resource_type"]]
        latest = row["latest"]
        found.append(
            Relationship(
                kind,
                f"{organisation.name} {verb}",
                timezone.localtime(latest).date() if latest else None,
            )
        )
    referred_in = (
        Entry.objects.filter(
            patient=patient,
            resource_type="ServiceRequest",
            effective_at__gte=since,
            resource__performer__contains=[{"identifier": {"value": organisation.ods_code}}],
        )
        .exclude(source_org=organisation)
        .aggregate(latest=Max("effective_at"))["latest"]
    )
    if referred_in:
        found.append(
            Relationship(
                "referral",
                f"The person was referred to {organisation.name}",
                timezone.localtime(referred_in).date(),
            )
        )
    return found


def session_key_hash(session_key: str) -> str:
    """A basis is bound to the signed-in session; the key itself is never stored."""
    return hashlib.sha256(session_key.encode()).hexdigest()


def access_basis_current(*, viewer: User, patient: Patient, session_key: str) -> AccessBasis | None:
    """The viewer's unexpired basis for this person in this session (emergency access first)."""
    if not session_key:
        return None
    current = AccessBasis.objects.filter(
        user=viewer,
        patient=patient,
        session_key_hash=session_key_hash(session_key),
        expires_at__gt=timezone.now(),
    )
    return (
        current.filter(kind=BasisKind.BREAK_GLASS).order_by("-created_at").first()
        or current.order_by("-created_at").first()
    )


# ------------------------------------------------------------------ what a viewer sees


@dataclass(frozen=True)
class ViewPolicy:
    """What one viewer may see of a record under one basis."""

    organisation_id: int
    sections: frozenset[str]
    restricted_visible: bool
    break_glass: bool

    def may_see_section(self, section: str) -> bool:
        return section in self.sections


def view_policy(*, viewer: User, basis: AccessBasis | None) -> ViewPolicy:
    """The viewer's sections and sensitivity rights; no basis or no role means nothing."""
    return view_policy_for(viewer=viewer, basis_kind=basis.kind if basis is not None else None)


def view_policy_for(*, viewer: User, basis_kind: str | None) -> ViewPolicy:
    """The policy for a basis of this kind: the pages' recorded basis, or the API's header."""
    table = policy_table()
    rules = table.sensitivity
    organisation = viewer.organisation
    if not viewer_may_search(viewer) or organisation is None or basis_kind is None:
        return ViewPolicy(0, frozenset(), restricted_visible=False, break_glass=False)
    break_glass = basis_kind == BasisKind.BREAK_GLASS
    restricted_visible = viewer.role in rules.restricted_roles or (
        break_glass and viewer.role in rules.break_glass_unlocks_roles
    )
    return ViewPolicy(
        organisation_id=organisation.pk,
        sections=table.sections_for(viewer.role, organisation.kind),
        restricted_visible=restricted_visible,
        break_glass=break_glass,
    )


def _restricted() -> Q:
    rules = policy_table().sensitivity
    return Q(sensitivity__overlap=sorted(rules.restricted_labels)) | Q(
        code__in=sorted(rules.sensitive_codes)
    )


def _very_restricted() -> Q:
    return Q(sensitivity__overlap=sorted(policy_table().sensitivity.very_restricted_labels))


@dataclass(frozen=True)
class VisibleEntries:
    entries: QuerySet[Entry]
    hidden: QuerySet[Entry]  # in the asked-for sections, withheld for sensitivity

    @functools.cached_property
    def withheld(self) -> int:
        """How many are withheld (counted once, when first asked)."""
        return self.hidden.count()


def entries_visible(
    *, patient: Patient, policy: ViewPolicy, sections: frozenset[str] | None = None
) -> VisibleEntries:
    """The person's entries this policy shows, in the asked-for sections (default: all it may).

    Entries from organisations without an active agreement are left out, not
    counted: they are not part of the shared record today.
    """
    wanted = policy.sections if sections is None else policy.sections & sections
    in_scope = Entry.objects.filter(
        patient=patient,
        section__in=sorted(wanted),
        source_org__in=Organisation.objects.with_active_agreement(),
    )
    own = Q(source_org_id=policy.organisation_id)
    hidden = _very_restricted() if policy.restricted_visible else _restricted() | _very_restricted()
    hidden &= ~own
    return VisibleEntries(
        entries=in_scope.exclude(hidden).select_related("source_org"),
        hidden=in_scope.filter(hidden),
    )


def entry_is_sensitive(entry: Entry) -> bool:
    """True for an item shown under a right to see restricted items (the page marks it)."""
    rules = policy_table().sensitivity
    labels = set(entry.sensitivity)
    return bool(
        labels & rules.restricted_labels
        or labels & rules.very_restricted_labels
        or entry.code in rules.sensitive_codes
    )
