"""Who may see which patient, and which of their entries: the one module that decides.

STYLE.md section 3. The record pages and the FHIR read API both call this
module; neither re-implements any part of it. The rules, each on its own line
below and each tested:

1. Only staff in a clinical or care role, of an organisation whose data
   sharing agreement is active, find or read records (viewer_may_search).
2. Only data from organisations with an active agreement is shown.
3. The role x organisation-kind table (access_policy.toml, loaded by
   sharedrecord.policy) decides sections.
4. Restricted items (labels, or any coding on a sensitive code list) are
   withheld unless the viewer's role may see them AND the feeds show a
   relationship (never a self-declared one), or emergency access unlocks
   them for the role; very restricted items only reach the organisation
   that sent them. Withheld items are counted once, overall, never described.
5. Elements of an item that belong to another section (an encounter's
   reason or diagnosis belongs to problems) are removed for roles that do
   not see that section.
6. Reading needs a recorded basis for this user, person and session
   (access_basis_current), or on the API a purpose of use sent with each
   request; the feeds' relationships are shown beside it. The organisation's
   own active care (care plan, alert, problem, care team) counts as a
   relationship; so does being the registered practice (the authoritative
   value, see registration_asserted).
7. Which basis kinds may be chosen, what each needs and what goes to review
   are "the basis for reading" below, one function per rule, for pages and
   API alike; basis_is_self_claimed says where and why the two differ.

Every other "who may" lives here too, one function per rule:
8. Who may read the audit trail, and which part of it
   (governance_viewer_for, registered with the audit app at start-up).
9. Who may record opt-outs for a practice (optout_practice_for), for which
   people (optout_practice_may_record), and who records objections for the
   programme (optout_objections_office_for).
10. Whose feeds may be taken (organisation_may_send_feeds).
11. Who may decide parked feed items, and whose (data_quality_scope_for).
12. Who signs in through single sign-on, as what (sso_role_for, sso_profile_refusal), and
    which sign-in assurance reads a record (assurance_level_of, assurance_may_read).
13. Who is told of an event about a person (notification_recipients), and
    what each subscriber or member of staff is told of it
    (notification_shown_as; for many people at once, notifications_shown_as):
    the item, "a new restricted item", or nothing.
14. Which sources are asked live for a record (pull_sources_for), and which
    of the items they answer with a viewer sees (pulled_item_visible: the
    same sections and sensitivity rules as rules 3 and 4).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Exists,
    F,
    Func,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.utils import timezone
from guardian.shortcuts import get_objects_for_user

from audit.governance import GovernanceViewer
from audit.selectors import GovernanceScope
from sharedrecord.auditing import actor_for
from sharedrecord.exceptions import PatientNotFound
from sharedrecord.models import (
    CLINICAL_ROLES,
    AccessBasis,
    BasisKind,
    Entry,
    Organisation,
    OrganisationKind,
    OverrideReason,
    Patient,
    PullMode,
    PullSource,
    RecordSection,
    StaffRole,
    User,
    is_uuid,
)
from sharedrecord.policy import policy_table

# ------------------------------------------------------------------ who may assert what

ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"


def registered_gp_named(resource: dict[str, Any]) -> str:
    """The ODS code a Patient resource names as the person's GP practice, or ""."""
    for ref in resource.get("generalPractitioner", []):
        identifier = ref.get("identifier", {}) if isinstance(ref, dict) else {}
        if identifier.get("system") == ODS_SYSTEM and identifier.get("value"):
            return str(identifier["value"]).upper()[:12]
    return ""


def may_assert_registration(organisation: Organisation) -> bool:
    """True for a registration authority (a PDS-like service): its word on the GP decides."""
    return organisation.kind == OrganisationKind.REGISTRATION_AUTHORITY


def may_record_dissent(organisation: Organisation) -> bool:
    """True for a GP practice: a dissent code in its own feed records its opt-out.

    Whether the person is its to opt out is optout_practice_may_record's.
    """
    return organisation.kind == OrganisationKind.GP_PRACTICE


def _authority_order(entry: Entry) -> tuple[datetime.datetime, datetime.datetime, int]:
    # Within one authority its own clock orders its statements; ours breaks ties.
    floor = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return (entry.source_updated_at or floor, entry.updated_at, entry.id)


def registration_asserted(*, sources: list[Entry], current: str) -> str:
    """The registered GP practice, from the sources allowed to assert it (architecture.md rule 6).

    1. A registration authority decides when it has sent a Patient resource
       for the person: its newest one's generalPractitioner, even when that
       names nobody. A code it names that belongs to an organisation we know
       is not a GP practice (a pharmacy, a hospital) is not a registration:
       the answer is then "not known".
    2. Otherwise a GP practice's own Patient resource naming that same
       practice (and not marked inactive) is its claim. The current holder
       keeps the person while it still claims them, so one practice cannot
       take another's patient; when the holder stops claiming (names
       another practice, marks the person inactive, or deletes its
       resource), the earliest remaining claim holds.
    3. Anything else (a hospital's, pharmacy's or council's view of the GP,
       a practice naming another practice) stays in its entry and moves
       nothing.
    """
    authority = [e for e in sources if may_assert_registration(e.source_org)]
    if authority:
        named = registered_gp_named(max(authority, key=_authority_order).resource)
        not_a_practice = (
            Organisation.objects.filter(ods_code=named)
            .exclude(kind=OrganisationKind.GP_PRACTICE)
            .exists()
        )
        return "" if not_a_practice else named
    claims = sorted(
        (
            e
            for e in sources
            if e.source_org.kind == OrganisationKind.GP_PRACTICE
            and e.resource.get("active") is not False
            and registered_gp_named(e.resource) == e.source_org.ods_code
        ),
        key=lambda e: (e.received_at, e.id),
    )
    claimants = [e.source_org.ods_code for e in claims]
    if current in claimants:
        return current
    return claimants[0] if claimants else ""


# ------------------------------------------------------------------ finding a person


def role_may_read_records(role: str) -> bool:
    """Whether a role reads records at all: the clinical and care roles (CLINICAL_ROLES).

    Partner systems' service accounts need one too; the other roles (privacy,
    opt-out and objections officers) never read a record.
    """
    return role in CLINICAL_ROLES


def viewer_may_search(viewer: User) -> bool:
    """Staff in a clinical or care role, of an organisation whose agreement is active."""
    organisation = viewer.organisation
    return (
        viewer.is_active
        and role_may_read_records(viewer.role)
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


# ------------------------------------------------------------------ single sign-on and assurance

# National RBAC job roles (the last part of CIS2's `role_code`, "S8000:G8000:R8000") and
# the role each signs in as. Roles with no entry (system administrators, unknown codes)
# get the refusal page: single sign-on never grants more than this table names.
SSO_JOB_ROLES: dict[str, str] = {
    "R0260": StaffRole.GP,
    "R8000": StaffRole.CLINICAL_PRACTITIONER,
    "R8001": StaffRole.NURSE,
    "R8003": StaffRole.HEALTH_PROFESSIONAL,
    "R8008": StaffRole.ADMIN_CLERK,
    "R8014": StaffRole.PRIVACY_OFFICER,
}


def sso_role_for(role_code: str) -> str:
    """The role a provider's role code signs in as, or "" when it has none.

    The job role is the code's last part; SSO_ROLE_MAP (settings) replaces the
    built-in table entry by entry.
    """
    job_role = role_code.rsplit(":", 1)[-1].strip()
    table = {**SSO_JOB_ROLES, **settings.SSO_ROLE_MAP}
    role = table.get(job_role, "")
    return role if role in StaffRole.values and role != StaffRole.SYSTEM_ADMIN else ""


def sso_profile_refusal(*, organisation: Organisation | None, role: str) -> str:
    """Why a role profile may not sign in ("" when it may): a reason code for the page.

    `unknown-organisation`: the profile's organisation is not one of ours;
    `no-agreement`: its data sharing agreement is not active today;
    `unmapped-role`: its job role signs in as nothing here.
    """
    if organisation is None:
        return "unknown-organisation"
    if not organisation.agreement_active():
        return "no-agreement"
    if not role:
        return "unmapped-role"
    return ""


def assurance_level_of(acr: str) -> int:
    """The authenticator assurance level an `acr` value states (CIS2's "AAL3_ANY" is 3).

    Values the deployment names in SSO_ACR_LEVELS count as listed; any other
    value without an "AAL<n>" counts as 0, so an unknown claim never reads.
    """
    listed = settings.SSO_ACR_LEVELS.get(acr)
    if listed is not None:
        return listed
    found = re.match(r"^AAL(\d)(?:_|$)", acr)
    return int(found.group(1)) if found else 0


def assurance_may_read(level: int) -> bool:
    """Whether a session signed in at this level may read a record (RECORD_MIN_AAL).

    A lower level may still find a person (identity only), never read the record.
    """
    return level >= settings.RECORD_MIN_AAL


def entry_of_person(*, entry_id: str, patient_id: str) -> bool:
    """Whether an entry (public id) is in this person's record: a launch context's limit.

    It says nothing about whether the viewer may see the entry; entries_visible does.
    """
    if not (is_uuid(entry_id) and is_uuid(patient_id)):
        return False
    return Entry.objects.filter(public_id=entry_id, patient__public_id=patient_id).exists()


# ------------------------------------------------------------------ relationships and basis


@dataclass(frozen=True)
class Relationship:
    """What the feeds show links the viewer's organisation to the person."""

    kind: str  # registered, encounter, referral, appointment, care-team
    description: str
    on: datetime.date | None = None


# Resource types that show a care relationship when recent, and how the page names them.
RELATIONSHIP_TYPES = {
    "Encounter": ("encounter", "recorded an encounter"),
    "ServiceRequest": ("referral", "made a referral"),
    "Appointment": ("appointment", "holds an appointment"),
}
# The organisation's own active care: it cares for the person now. A care
# team or care plan counts however old; an active alert or problem only if the
# organisation sent or updated it within RELATIONSHIP_DAYS (hospitals seldom
# close problems, and an old one must not become a lasting relationship).
ACTIVE_CARE_TYPES = {
    "CareTeam": ("care-team", "has the person in a care team"),
    "CarePlan": ("care-plan", "holds an active care plan or care package"),
    "Flag": ("alert", "holds an active alert"),
    "Condition": ("active-problem", "is treating an active problem"),
}
ONGOING_CARE_TYPES = ("CareTeam", "CarePlan")
ACTIVE_STATUSES = ("active", "recurrence", "relapse")


def relationships_of(*, viewer: User, patient: Patient) -> list[Relationship]:
    """Relationships between the viewer's organisation and the person, from the feeds.

    The registered practice (a GP practice only, and only as its authorities
    assert it); an encounter, referral or appointment from the organisation
    within RELATIONSHIP_DAYS (appointments ahead count too); the
    organisation's own active care plan or care team, or active alert or
    problem it sent within RELATIONSHIP_DAYS; a referral addressed to it.
    """
    organisation = viewer.organisation
    if organisation is None:
        return []
    return organisation_relationships(organisation=organisation, patient=patient)


def organisation_relationships(
    *, organisation: Organisation, patient: Patient
) -> list[Relationship]:
    """relationships_of for an organisation: what its staff and its systems are shown alike."""
    found: list[Relationship] = []
    if (
        organisation.kind == OrganisationKind.GP_PRACTICE
        and patient.registered_gp_ods
        and patient.registered_gp_ods == organisation.ods_code
    ):
        found.append(Relationship("registered", "The person is registered with your practice."))
    since = timezone.now() - datetime.timedelta(days=settings.RELATIONSHIP_DAYS)
    named = {**RELATIONSHIP_TYPES, **ACTIVE_CARE_TYPES}
    recent = (
        Entry.objects.filter(patient=patient, source_org=organisation, resource_type__in=named)
        .filter(
            Q(resource_type__in=RELATIONSHIP_TYPES, effective_at__gte=since)
            | Q(resource_type__in=ONGOING_CARE_TYPES, status__in=ACTIVE_STATUSES)
            | Q(
                resource_type__in=ACTIVE_CARE_TYPES,
                status__in=ACTIVE_STATUSES,
                updated_at__gte=since,
            )
        )
        .values("resource_type")
        .annotate(latest=Max("effective_at"))
        .order_by("resource_type")
    )
    for row in recent:
        kind, verb = named[row["resource_type"]]
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
    emergency_first = Case(When(kind=BasisKind.BREAK_GLASS, then=Value(0)), default=Value(1))
    return (
        AccessBasis.objects.filter(
            user=viewer,
            patient=patient,
            session_key_hash=session_key_hash(session_key),
            expires_at__gt=timezone.now(),
        )
        .order_by(emergency_first, "-created_at", "-id")
        .first()
    )


# ------------------------------------------------------------------ the basis for reading
#
# Who may read a record on which basis, for pages and API alike. The forms
# (basis.py) and the API's headers (fhir_read.api_basis_parse) only read
# their input and ask these rules; the messages are theirs.

# Characters of words a basis needs: a described role, an emergency justification.
BASIS_WORDS_MIN = 10
# The API's purposes of use (HL7 v3 PurposeOfUse) and what each means.
API_PURPOSES = {"TREAT": "treatment", "ETREAT": "emergency treatment (break glass)"}


def basis_kind_routine() -> BasisKind:
    """The everyday basis the deployment chose (settings.CONSENT_MODEL).

    Direct care under the implied consent model, the person's permission now
    under the explicit one.
    """
    if settings.CONSENT_MODEL == "implied":
        return BasisKind.DIRECT_CARE
    return BasisKind.CONSENT


def basis_kind_allowed(kind: str) -> bool:
    """The routine kind or emergency access; the other consent model's kind is refused."""
    routine = kind == basis_kind_routine()
    emergency = kind == BasisKind.BREAK_GLASS
    return routine or emergency


def basis_is_self_claimed(*, kind: str, relationships: Collection[object]) -> bool:
    """A routine basis with no relationship in the feeds rests on the viewer's own word.

    The record pages then ask the viewer to describe their role in the
    person's care (claimed_role_acceptable) and keep it; the API does not.
    That is the one difference between pages and API in what a basis needs,
    and it is deliberate: the API has no session and no person at a form (a
    partner system reads as a service account; every request sends its
    purpose in a header, for that request alone), so there is nowhere to ask
    for or keep a description. Both send such a read to review
    (basis_needs_review), and neither lets a self-claimed relationship unlock
    a restricted item (view_policy_for). It follows that a page's basis is
    recorded once for the session, with the relationships the feeds showed
    then, while an API request is judged against the feeds' relationships now.
    """
    emergency = kind == BasisKind.BREAK_GLASS
    return not emergency and not relationships


def basis_needs_review(*, kind: str, relationships: Collection[object]) -> bool:
    """Emergency access, and any read with no relationship in the feeds, go to review.

    The privacy officer's review queue (audit) holds every such basis or read.
    """
    emergency = kind == BasisKind.BREAK_GLASS
    feeds_show_none = not relationships
    return emergency or feeds_show_none


def claimed_role_acceptable(text: str) -> bool:
    """A self-claimed role is described in at least BASIS_WORDS_MIN characters."""
    return len(text.strip()) >= BASIS_WORDS_MIN


def override_reason_acceptable(code: str) -> bool:
    """Emergency access names an HL7 v3 override reason (OVRER, OVRPJ, ...)."""
    return code in OverrideReason.values


def justification_acceptable(text: str) -> bool:
    """Emergency access says why, in at least BASIS_WORDS_MIN characters."""
    return len(text.strip()) >= BASIS_WORDS_MIN


def api_purpose_acceptable(purpose: str) -> bool:
    """An API read names its purpose of use: TREAT, or ETREAT for emergency access."""
    return purpose in API_PURPOSES


def basis_kind_for_purpose(purpose: str) -> BasisKind:
    """The basis an API purpose of use reads under: ETREAT is emergency access."""
    if purpose == "ETREAT":
        return BasisKind.BREAK_GLASS
    return basis_kind_routine()


# ------------------------------------------------------------------ what a viewer sees


@dataclass(frozen=True)
class ViewPolicy:
    """What one viewer may see of a record under one basis."""

    organisation_id: int
    sections: frozenset[str]
    restricted_visible: bool
    break_glass: bool
    # Resource type -> top-level elements removed (they belong to a section not shown).
    withheld_elements: dict[str, frozenset[str]] = field(default_factory=dict)

    def may_see_section(self, section: str) -> bool:
        return section in self.sections

    def redact(self, resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        """The resource without the elements this viewer may not see (a copy if any go).

        When any element goes, the narrative and contained resources go too:
        they usually repeat it (a diagnosis in the text, the Condition a
        reasonReference points at).
        """
        withheld = self.withheld_elements.get(resource_type, frozenset())
        if not withheld.intersection(resource):
            return resource
        dropped = withheld | REDACTION_ALSO_DROPS
        return {k: v for k, v in resource.items() if k not in dropped}


# Elements that go with any withheld element, because they may repeat it.
REDACTION_ALSO_DROPS = frozenset({"text", "contained"})


def view_policy(*, viewer: User, basis: AccessBasis | None) -> ViewPolicy:
    """The viewer's sections and sensitivity rights; no basis or no role means nothing.

    The relationships are those the feeds showed when the basis was recorded
    (a self-declared one is not among them).
    """
    return view_policy_for(
        viewer=viewer,
        basis_kind=basis.kind if basis is not None else None,
        relationships=basis.relationships if basis is not None else (),
    )


def view_policy_for(
    *, viewer: User, basis_kind: str | None, relationships: Collection[str]
) -> ViewPolicy:
    """The policy for a basis of this kind: the pages' recorded basis, or the API's header.

    `relationships`: the kinds the feeds show between the viewer's
    organisation and the person (relationships_of); restricted items need one.
    """
    table = policy_table()
    rules = table.sensitivity
    organisation = viewer.organisation
    if not viewer_may_search(viewer) or organisation is None or basis_kind is None:
        return ViewPolicy(0, frozenset(), restricted_visible=False, break_glass=False)
    break_glass = basis_kind == BasisKind.BREAK_GLASS
    role_may = viewer.role in rules.restricted_roles
    feeds_show_relationship = bool(relationships)
    unlocked_by_break_glass = break_glass and viewer.role in rules.break_glass_unlocks_roles
    sections = table.sections_for(viewer.role, organisation.kind)
    return ViewPolicy(
        organisation_id=organisation.pk,
        sections=sections,
        restricted_visible=(role_may and feeds_show_relationship) or unlocked_by_break_glass,
        break_glass=break_glass,
        withheld_elements=table.withheld_elements(sections),
    )


def _restricted() -> Q:
    rules = policy_table().sensitivity
    return Q(sensitivity__overlap=_one_array(rules.restricted_labels)) | Q(
        _HasCodeAmong("codes", rules.sensitive_codes)
    )


class _HasCodeAmong(Func):
    """True when the array column holds a value among `values`, however many there are.

    `codes && ARRAY[...]` compares every pair: for the policy's two thousand
    sensitive codes it took 300 ms over 30,000 results. `= ANY` of one array
    is hashed by PostgreSQL (14 and later) once per statement: 26 ms, the rows'
    own read being 9 ms. The values go as one parameter (_array_literal).
    """

    output_field = BooleanField()
    template = (
        "EXISTS (SELECT 1 FROM unnest(%(expressions)s) AS listed(value)"
        " WHERE listed.value = ANY(%%s::text[]))"
    )

    def __init__(self, column: str, values: frozenset[str]) -> None:
        super().__init__(F(column))
        self.values = values

    def as_sql(
        self,
        compiler: Any,
        connection: Any,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, tuple[str | int, ...]]:
        sql, params = super().as_sql(
            compiler, connection, function, template, arg_joiner, **extra_context
        )
        return sql, (*params, _array_literal(self.values))


@functools.lru_cache(maxsize=4)
def _array_literal(values: frozenset[str]) -> str:
    """PostgreSQL's text form of an array of `values`, made once per list.

    Bound as one string: psycopg binds a Python list value by value, which for
    two thousand codes, in each of a summary's ten lists, took 40 ms a page.
    """
    quoted = (value.replace("\\", "\\\\").replace('"', '\\"') for value in sorted(values))
    return "{" + ",".join(f'"{value}"' for value in quoted) + "}"


def _very_restricted() -> Q:
    return Q(sensitivity__overlap=_one_array(policy_table().sensitivity.very_restricted_labels))


def _one_array(values: Collection[str]) -> Value:
    """A few labels for an array lookup as one parameter, not an ARRAY[] of one per value."""
    return Value(sorted(values), output_field=ArrayField(CharField()))


@dataclass(frozen=True)
class VisibleEntries:
    """What a policy shows of a person's entries (or some people's), and what it withholds.

    `entries` and `hidden` are for reading. `in_scope` (every entry in the
    asked-for sections from a sharing organisation, shown or not) is only
    for counting both in one scan, with `items_where` and `hidden_where`:
    never read its rows.
    """

    entries: QuerySet[Entry]
    hidden: QuerySet[Entry]  # in the asked-for sections, withheld for sensitivity
    in_scope: QuerySet[Entry]
    items_where: Q  # which of in_scope are shown care items (entries less demographics)
    hidden_where: Q  # which of in_scope are hidden


def entries_visible(
    *, patient: Patient, policy: ViewPolicy, sections: frozenset[str] | None = None
) -> VisibleEntries:
    """The person's entries this policy shows, in the asked-for sections (default: all it may).

    Entries from organisations without an active agreement are left out, not
    counted: they are not part of the shared record today. So is a source's
    own copy of the person's demographics when the viewer sees none of that
    source's care: it would tell that the organisation (a mental health trust,
    a sexual health clinic) knows the person, which is itself withheld
    information. The registration authority's and the registered practice's
    copies, and the viewer's own organisation's, are always shown.
    """
    return _entries_visible(person=patient, policy=policy, sections=sections)


def entries_visible_among(*, people: Collection[int], policy: ViewPolicy) -> VisibleEntries:
    """These people's entries this policy shows, each under the rules as they apply to its person.

    The rules of entries_visible, with the "knows only" rule reading each
    entry's own person's care and registered practice: for telling one viewer
    of many people's events at once (notifications_shown_as). `people` are
    Patient ids.
    """
    return _entries_visible(person=None, people=people, policy=policy, sections=None)


def _entries_visible(
    *,
    person: Patient | None,
    people: Collection[int] = (),
    policy: ViewPolicy,
    sections: frozenset[str] | None,
) -> VisibleEntries:
    """entries_visible for one person; or (person None) entries_visible_among `people`."""
    wanted = policy.sections if sections is None else policy.sections & sections
    active = Organisation.objects.with_active_agreement()
    if person is not None:
        whose, same_person = Q(patient=person), Q(patient=person)
        registered_gp: str | F = person.registered_gp_ods
    else:
        whose, same_person = Q(patient_id__in=sorted(people)), Q(patient_id=OuterRef("patient_id"))
        registered_gp = F("patient__registered_gp_ods")
    in_scope = Entry.objects.filter(whose, section__in=sorted(wanted), source_org__in=active)
    own = Q(source_org_id=policy.organisation_id)
    hidden = _very_restricted() if policy.restricted_visible else _restricted() | _very_restricted()
    hidden &= ~own
    shown = ~hidden
    # Only a demographics entry can be a source's "knows only" copy: without the section
    # the rule is false for every row, and its subquery costs the planner a millisecond
    # or more in every statement that carries it.
    if RecordSection.DEMOGRAPHICS.value in wanted:
        care_shown = Entry.objects.filter(
            same_person,
            source_org_id=OuterRef("source_org_id"),
            section__in=sorted(policy.sections - {RecordSection.DEMOGRAPHICS.value}),
            source_org__in=active,
        ).exclude(hidden)
        shown &= ~(
            Q(section=RecordSection.DEMOGRAPHICS)
            & ~own
            & ~Q(source_org__kind=OrganisationKind.REGISTRATION_AUTHORITY)
            & ~Q(source_org__ods_code=registered_gp)
            & ~Q(Exists(care_shown))
        )
    return VisibleEntries(
        entries=in_scope.filter(shown).select_related("source_org"),
        hidden=in_scope.filter(hidden),
        in_scope=in_scope,
        # The "knows only" rule is about demographics alone: without them, not being
        # withheld is enough (and far simpler SQL).
        items_where=~hidden & ~Q(section=RecordSection.DEMOGRAPHICS),
        hidden_where=hidden,
    )


def entry_is_sensitive(entry: Entry) -> bool:
    """True for an item shown under a right to see restricted items (the page marks it)."""
    return entry_sensitivity_flag(sensitivity=entry.sensitivity, codes=entry.codes)


def entry_sensitivity_flag(*, sensitivity: Collection[str], codes: Collection[str]) -> bool:
    """True for labels or codes that make an item restricted or very restricted."""
    rules = policy_table().sensitivity
    labels = set(sensitivity)
    return bool(
        labels & rules.restricted_labels
        or labels & rules.very_restricted_labels
        or rules.sensitive_codes.intersection(codes)
    )


# ------------------------------------------------------------------ who may send feeds


def organisation_may_send_feeds(organisation: Organisation) -> bool:
    """Whether an organisation's feeds may be taken: its data sharing agreement covers today.

    Asked at receipt (each door answers in its own protocol: a FHIR 403
    OperationOutcome, an HL7 AR) and again by the worker, because an
    agreement can end between a message's receipt and its processing.
    """
    return organisation.agreement_active()


# ------------------------------------------------------------------ who may read the audit trail


def governance_viewer_for(user: Any) -> GovernanceViewer | None:
    """Who may read the audit trail, and how much (registered with the audit app).

    Only privacy officers. Those of an organisation in GOVERNANCE_ODS_CODES
    (the programme that runs the record) see the whole trail. Every other
    privacy officer holds two views of their organisation: the record-holder
    view (the default) and its staff's accesses to anyone. No superuser or
    staff shortcut.
    """
    if not isinstance(user, User) or not user.is_authenticated:
        return None
    if user.role != StaffRole.PRIVACY_OFFICER or user.organisation is None:
        return None
    ods = user.organisation.ods_code
    if ods in settings.GOVERNANCE_ODS_CODES:
        held: tuple[GovernanceScope, ...] = (GovernanceScope(),)
    else:
        held = (GovernanceScope(holder_ods=ods), GovernanceScope(staff_ods=ods))
    return GovernanceViewer(user=user, actor=actor_for(user), scope=held[0], held=held)


# ------------------------------------------------------- who may manage opt-outs and objections


def optout_practice_for(user: User) -> Organisation | None:
    """The GP practice whose opt-outs this user may record, or None.

    The user must belong to a GP practice and hold the object permission on it
    (granted in the admin); superusers and global permissions do not count.
    """
    practice = user.organisation
    if practice is None or practice.kind != OrganisationKind.GP_PRACTICE:
        return None
    allowed = get_objects_for_user(
        user,
        "sharedrecord.manage_optouts",
        klass=Organisation.objects.filter(pk=practice.pk),
        with_superuser=False,
        accept_global_perms=False,
    ).exists()
    return practice if allowed else None


def optout_practice_may_record(*, practice: Organisation, registered_gp_ods: str) -> bool:
    """Whether a practice may record an opt-out for a person, and see who the number is.

    Its own registered patient, or someone whose registered practice the record
    does not know (no Patient row, or no registered practice on it): the
    latter goes to the programme's review. Never someone the authoritative
    registration puts with another practice.
    """
    if not registered_gp_ods:
        return True
    return registered_gp_ods == practice.ods_code


def optout_objections_office_for(user: User) -> Organisation | None:
    """The programme organisation for which this user records objections, or None.

    An active objections officer of an organisation in GOVERNANCE_ODS_CODES
    (the programme that runs the record) records objections taken by phone or
    e-mail on behalf of the person's registered practice. No superuser or
    global permission shortcut, and no right to read any practice's registry.
    """
    organisation = user.organisation
    if not user.is_active or user.role != StaffRole.OBJECTIONS_OFFICER:
        return None
    if organisation is None:
        return None
    if organisation.ods_code not in settings.GOVERNANCE_ODS_CODES:
        return None
    return organisation


# ------------------------------------------------------------------ who may decide parked items


@dataclass(frozen=True)
class DataQualityScope:
    """Whose parked items a data quality officer sees and decides.

    `organisation_ods` is None for the programme's officers (every item);
    otherwise only the items that organisation's own feeds parked.
    """

    organisation_ods: str | None

    def covers(self, sender_ods: str) -> bool:
        return self.organisation_ods is None or self.organisation_ods == sender_ods


def data_quality_scope_for(user: Any) -> DataQualityScope | None:
    """Whose parked items this user may see and decide, or None.

    Only active data quality officers. Those of an organisation in
    GOVERNANCE_ODS_CODES (the programme that runs the record) see every
    item; any other organisation's see the items its own feeds parked. No
    superuser or global permission shortcut. A parked item never shows
    clinical content to anyone (only what is needed to decide who it is).
    """
    if not isinstance(user, User) or not user.is_authenticated or not user.is_active:
        return None
    if user.role != StaffRole.DATA_QUALITY_OFFICER:
        return None
    organisation = user.organisation
    if organisation is None:
        return None
    if organisation.ods_code in settings.GOVERNANCE_ODS_CODES:
        return DataQualityScope(organisation_ods=None)
    return DataQualityScope(organisation_ods=organisation.ods_code)


# ------------------------------------------------------- who may watch the feeds (operations)


def feed_operator_for(user: Any) -> Organisation | None:
    """The programme organisation whose feeds this user watches and replays, or None.

    An active feed operator of an organisation in GOVERNANCE_ODS_CODES (the
    programme that runs the record). Operators see systems, times, counts and
    reason codes, never a record; no superuser or global permission shortcut.
    """
    if not isinstance(user, User) or not user.is_authenticated or not user.is_active:
        return None
    if user.role != StaffRole.FEED_OPERATOR:
        return None
    organisation = user.organisation
    if organisation is None:
        return None
    if organisation.ods_code not in settings.GOVERNANCE_ODS_CODES:
        return None
    return organisation


def optin_shown_to_partner(*, partner_ods: str, removed_from: Collection[str]) -> bool:
    """Whether a partner system learns that someone opted back in: only if its data was removed.

    `removed_from` is every organisation whose data the opt-out removed; a
    partner that never sent anything about the person learns nothing of them.
    """
    return partner_ods in removed_from


# ------------------------------------------------------------------ who is told of an event


def notification_recipients(
    *, patient: Patient, source_org: Organisation
) -> dict[Organisation, list[str]]:
    """The organisations told of an event about this person, with the relationships why.

    1. The person's registered GP practice, always (the authoritative
       registration, registration_asserted), as "registered".
    2. Any other organisation only where the feeds show a relationship
       (organisation_relationships: an encounter or open episode, a
       referral made or addressed to it, a care team or care plan of its own).
    3. Only organisations whose data sharing agreement is active.
    4. Never the organisation whose feed the event came from: it knows.
    """
    candidates = set(
        Entry.objects.filter(patient=patient, resource_type__in=RELATIONSHIP_CANDIDATE_TYPES)
        .values_list("source_org_id", flat=True)
        .distinct()
    )
    performers = {
        str(performer.get("identifier", {}).get("value", "")).upper()
        for resource in Entry.objects.filter(
            patient=patient, resource_type="ServiceRequest"
        ).values_list("resource", flat=True)
        for performer in (resource.get("performer") or [])
        if isinstance(performer, dict) and isinstance(performer.get("identifier"), dict)
    } - {""}
    named = Q(pk__in=candidates) | Q(ods_code__in=performers)
    if patient.registered_gp_ods:
        named |= Q(ods_code=patient.registered_gp_ods, kind=OrganisationKind.GP_PRACTICE)
    told: dict[Organisation, list[str]] = {}
    for organisation in Organisation.objects.with_active_agreement().filter(named):
        if organisation.pk == source_org.pk:
            continue
        found = organisation_relationships(organisation=organisation, patient=patient)
        if found:
            told[organisation] = sorted({r.kind for r in found})
    return told


RELATIONSHIP_CANDIDATE_TYPES = (*RELATIONSHIP_TYPES, *ACTIVE_CARE_TYPES)


def notification_shown_as(
    *, viewer: User, patient: Patient, entry_id: int, relationships: Collection[str]
) -> str:
    """What one subscriber or member of staff is told of an event's entry, by the access policy.

    "item" when the viewer's policy (its role, under the routine basis, with
    the relationships the feeds show) shows the entry; "restricted" when the
    entry is in a section the viewer sees but is withheld for sensitivity
    (told only that there is a new restricted item, nothing of it); "" when
    the viewer may not see that section, or reads no records at all.
    """
    return notifications_shown_as(
        viewer=viewer, entries=[(patient.pk, entry_id)], relationships=relationships
    ).get(entry_id, "")


def notifications_shown_as(
    *, viewer: User, entries: Collection[tuple[int, int]], relationships: Collection[str]
) -> dict[int, str]:
    """notification_shown_as for entries of any number of people, in two queries.

    `entries` are (Patient id, Entry id) pairs: an entry is told only while it
    is that person's (one moved to another person since, by a merge, is told
    nothing). `relationships` are those the feeds show between the viewer's
    organisation and each of these people (the in-app list groups its notices
    by them). By entry id; an entry told nothing is left out.
    """
    policy = view_policy_for(
        viewer=viewer, basis_kind=basis_kind_routine(), relationships=relationships
    )
    if not policy.sections or not entries:
        return {}
    visible = entries_visible_among(people={p for p, _ in entries}, policy=policy)
    pairs = set(entries)
    wanted = sorted(e for _, e in pairs)
    told: dict[int, str] = {}
    for rows, shown_as in ((visible.entries, "item"), (visible.hidden, "restricted")):
        for pk, patient_id in rows.filter(pk__in=wanted).values_list("pk", "patient_id"):
            if (patient_id, pk) in pairs:
                told.setdefault(pk, shown_as)
    return told


# ------------------------------------------------------------------ live pull (issue 25)


def pull_sources_for(viewer: User) -> QuerySet[PullSource]:
    """The sources asked live when this viewer opens a record (rule 14).

    Only active sources that answer pulls (not push-only), of organisations
    whose data sharing agreement is active today, and only for a viewer who
    may read records at all.
    """
    if not viewer_may_search(viewer):
        return PullSource.objects.none()
    active = Organisation.objects.with_active_agreement()
    return (
        PullSource.objects.filter(active=True, organisation__in=active)
        .exclude(mode=PullMode.PUSH_ONLY)
        .select_related("organisation")
        .order_by("organisation__name")
    )


def organisation_is_pull_only(organisation: Organisation) -> bool:
    """Whether the organisation takes part only by being asked live: its feeds are refused.

    A pull-only deployment stores nothing of its care (issue 25), so a feed
    from it is refused at the door rather than quietly kept.
    """
    return PullSource.objects.filter(
        organisation=organisation, mode=PullMode.PULL_ONLY, active=True
    ).exists()


def pulled_item_visible(
    *,
    policy: ViewPolicy,
    source_org_id: int,
    section: str,
    sensitivity: Collection[str],
    codes: Collection[str],
) -> bool:
    """Whether one item a source answered with live is shown under this policy (rule 14).

    The same rules as entries_visible, for an item that is never stored:
    a section the viewer's role sees; very restricted items never (except
    the viewer's own organisation's); restricted items only under a right
    to see them. A source's copy of the person's demographics is not shown.
    """
    rules = policy_table().sensitivity
    own = source_org_id == policy.organisation_id
    labels = set(sensitivity)
    very_restricted = bool(labels & rules.very_restricted_labels)
    restricted = bool(labels & rules.restricted_labels or rules.sensitive_codes.intersection(codes))
    if section == RecordSection.DEMOGRAPHICS or section not in policy.sections:
        return False
    if own:
        return True
    if very_restricted:
        return False
    return not restricted or policy.restricted_visible
