"""SMART on FHIR v1 scopes: which resource types a token may read, decided before any query.

A scope is `<context>/<Type or *>.read`. `user/` is a member of staff
through an application (authorization code), `system/` a partner system
(client credentials). A `patient/` scope allows what the caller's `user/` or
`system/` scope would, never more: the access policy still decides which people
and entries are shown. A staff application that also asks for `launch` or
`launch/patient` gets the EHR launch context: the person whose record is open in
the member of staff's session when they consent (the token response's `patient`),
and then its `patient/` scopes read only that person (tokens_patient_limited).
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
EVERYTHING_ONLY_TYPES: tuple[str, ...] = ("Patient", "RelatedPerson", "CareTeam", "Consent")
READABLE_TYPES: frozenset[str] = frozenset({*SEARCHABLE_TYPES, *EVERYTHING_ONLY_TYPES})
CONTEXTS = ("patient", "user", "system")


LAUNCH_SCOPES: dict[str, str] = {
    "launch": "Open with the person whose record you have open (EHR launch)",
    "launch/patient": "Work only with the person whose record you have open",
}


def smart_scopes() -> dict[str, str]:
    """Every scope a client may ask for, with the words the consent page shows."""
    scopes: dict[str, str] = dict(LAUNCH_SCOPES)
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
    launch = [scope for scope in scopes if scope in LAUNCH_SCOPES]
    if launch and system:
        return False  # launch context is a member of staff's, never a partner system's
    rest = [scope for scope in scopes if scope not in LAUNCH_SCOPES]
    return bool(rest) and all(scope.partition("/")[0] in contexts for scope in rest)


def scopes_want_launch(scopes: list[str] | set[str] | frozenset[str]) -> bool:
    """Whether the client asked for the EHR launch context."""
    return any(scope in LAUNCH_SCOPES for scope in scopes)


def tokens_patient_limited(scopes: set[str] | frozenset[str]) -> bool:
    """With launch context, whether the token reads only that person.

    Its `patient/` scopes are limited to them; a `user/` scope held beside them
    reads as the member of staff would, so only a token without one is limited.
    """
    return scopes_want_launch(scopes) and not any(s.startswith("user/") for s in scopes)
