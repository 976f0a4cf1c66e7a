"""SMART on FHIR v1 scopes: which resource types a token may read, decided before any query.

A scope is `<context>/<Type or *>.read`. `user/` is a member of staff
through an application (authorization code), `system/` a partner system
(client credentials). We give no launch context, so a `patient/` scope
allows what the caller's `user/` or `system/` scope would, never more: the
access policy still decides which people and entries are shown.
"""

from __future__ import annotations

# The types the read API serves: the person, and every type a record entry may hold.
SEARCHABLE_TYPES: tuple[str, ...] = (
    "AllergyIntolerance",
    "MedicationStatement",
    "MedicationRequest",
    "Condition",
    "Observation",
    "DiagnosticReport",
    "Encounter",
    "Procedure",
    "Immunization",
    "CarePlan",
    "DocumentReference",
    "ServiceRequest",
    "Appointment",
    "Flag",
)
# Stored entries of these types come back in $everything (the record pages show them too).
EVERYTHING_ONLY_TYPES: tuple[str, ...] = ("Patient", "RelatedPerson", "CareTeam")
READABLE_TYPES: frozenset[str] = frozenset({*SEARCHABLE_TYPES, *EVERYTHING_ONLY_TYPES})
CONTEXTS = ("patient", "user", "system")


def smart_scopes() -> dict[str, str]:
    """Every scope a client may ask for, with the words the consent page shows."""
    scopes: dict[str, str] = {}
    for context in CONTEXTS:
        scopes[f"{context}/*.read"] = f"Read every record type ({context} access)"
        for resource_type in sorted(READABLE_TYPES):
            scopes[f"{context}/{resource_type}.read"] = f"Read {resource_type} ({context} access)"
    return scopes


def types_allowed(scopes: set[str] | frozenset[str], *, system: bool) -> frozenset[str]:
    """The resource types these granted scopes let the caller read.

    A system caller's `user/` scopes count for nothing, and a user's
    `system/` scopes likewise: the context must match who is calling.
    """
    contexts = ("patient", "system") if system else ("patient", "user")
    allowed: set[str] = set()
    for scope in scopes:
        context, _, rest = scope.partition("/")
        resource_type, _, access = rest.partition(".")
        if context not in contexts or access not in ("read", "*"):
            continue
        if resource_type == "*":
            return READABLE_TYPES
        if resource_type in READABLE_TYPES:
            allowed.add(resource_type)
    return frozenset(allowed)


def scopes_grantable(scopes: list[str] | set[str], *, system: bool) -> bool:
    """Whether a client of this kind may be granted all these scopes (and at least one).

    `system/` scopes are for partner systems (client credentials) only, and
    `user/` scopes for staff applications (the authorization code flow) only:
    a scope the caller's kind would not honour is refused when asked for,
    not granted and ignored later. `patient/` scopes suit both (see above).
    """
    contexts = ("patient", "system") if system else ("patient", "user")
    return bool(scopes) and all(scope.partition("/")[0] in contexts for scope in scopes)
