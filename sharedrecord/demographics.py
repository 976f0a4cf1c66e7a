"""A person's shown demographics: what each source's Patient says, and whose word wins.

DEMOGRAPHIC_GROUPS names the fields by the group the banner shows;
patient_demographics_refresh recomputes the shown values and the registered
practice from the sources (access.registration_asserted decides the latter).
"""

from __future__ import annotations

import datetime
from typing import Any

from audit.directory import Subject
from audit.models import AuditAction
from audit.trail import AuditActor, AuditSubject, audit_event_record
from sharedrecord.access import may_assert_registration, registration_asserted
from sharedrecord.models import (
    Entry,
    Patient,
)
from sharedrecord.policy import policy_table


def _first(items: Any) -> dict[str, Any]:
    return items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}


# The demographic fields a source's Patient resource gives, grouped as the
# banner shows them, and what the page and the API call each when sources
# disagree (Patient.disputed_labels).
DEMOGRAPHIC_GROUPS: dict[str, tuple[str, ...]] = {
    "name": ("family", "given"),
    "birth-date": ("birth_date",),
    "gender": ("gender",),
    "address": ("postcode", "address"),
    "death": ("deceased_at", "deceased"),
}


def demographics_of(resource: dict[str, Any]) -> dict[str, str]:
    """The shown demographic fields of one source's Patient resource ("" where not sent)."""
    name = next(
        (n for n in resource.get("name", []) if n.get("use") == "official"),
        _first(resource.get("name")),
    )
    address = next(
        (a for a in resource.get("address", []) if a.get("use") in ("home", None)),
        _first(resource.get("address")),
    )
    birth = resource.get("birthDate")
    died = resource.get("deceasedDateTime")
    alive = resource.get("deceasedBoolean")
    return {
        "family": str(name.get("family", ""))[:200],
        "given": " ".join(name.get("given", []))[:200],
        "birth_date": birth if isinstance(birth, str) and len(birth) == 10 else "",
        "gender": str(resource.get("gender", ""))[:16],
        "postcode": str(address.get("postalCode", ""))[:10],
        "address": ", ".join([*address.get("line", []), address.get("city", "")]).strip(", ")[:400],
        "deceased_at": died[:40] if isinstance(died, str) else "",
        "deceased": "yes" if died or alive is True else ("no" if alive is False else ""),
    }


def _plain(value: str) -> str:
    return "".join(value.split()).upper()


def _disputed(shown: dict[str, str], others: list[dict[str, str]]) -> list[str]:
    """The groups on which another source holds a different value.

    A field is compared only where both sides have it: a source that sends
    no given names does not dispute the name.
    """
    disputed = []
    for group, keys in DEMOGRAPHIC_GROUPS.items():
        for other in others:
            if any(shown[k] and other[k] and _plain(shown[k]) != _plain(other[k]) for k in keys):
                disputed.append(group)
                break
    return disputed


def _demographic_precedence(sources: list[Entry], registered: str) -> list[Entry]:
    """The sources in the order the shown demographics take them.

    The registration authority's (its newest statement first), then the
    registered practice's own, then every other source, most recently
    received first (our clock, not the senders').
    """

    def rank(entry: Entry) -> int:
        if may_assert_registration(entry.source_org):
            return 0
        return 1 if entry.source_org.ods_code == registered else 2

    newest = sorted(sources, key=lambda e: (e.updated_at, e.id), reverse=True)
    authority = sorted(
        (e for e in newest if rank(e) == 0),
        key=lambda e: (e.source_updated_at or e.updated_at, e.updated_at, e.id),
        reverse=True,
    )
    return [*authority, *(e for e in newest if rank(e) == 1), *(e for e in newest if rank(e) == 2)]


def patient_demographics_refresh(
    *, patient: Patient, asserted_by: AuditActor | None = None
) -> Patient:
    """Recompute the shown demographics and the registered practice from the sources.

    The registered practice comes only from its authorities
    (access.registration_asserted). The shown demographics follow the same
    precedence, field group by field group: each group (name, date of birth,
    sex, address, death) from the first source in precedence that sends it
    (_demographic_precedence). Groups on which another shared source
    (active agreement, not very restricted) holds a different value are kept
    in demographics_disputed, so the page and the API can say so.
    Side effects: when the registered practice moves or is cleared, one
    audit event (registration-change) naming the old and new practice, with
    `asserted_by` (default the ingestion system) as its actor.
    """
    sources = list(
        Entry.objects.filter(patient=patient, resource_type="Patient").select_related("source_org")
    )
    previous = patient.registered_gp_ods
    registered = registration_asserted(sources=sources, current=previous)
    ordered = _demographic_precedence(sources, registered)
    found = [demographics_of(e.resource) for e in ordered]
    shown = dict.fromkeys(demographics_of({}), "")
    for keys in DEMOGRAPHIC_GROUPS.values():
        giver = next((f for f in found if any(f[k] for k in keys)), None)
        if giver is not None:
            shown.update({k: giver[k] for k in keys})
    # Every group comes from `shown`: with no Patient left from any source (all
    # withdrawn or moved away) they are cleared, not kept from a source that no
    # longer says so.
    patient.family_name, patient.given_names = shown["family"], shown["given"]
    patient.birth_date = (
        datetime.date.fromisoformat(shown["birth_date"]) if shown["birth_date"] else None
    )
    patient.gender, patient.postcode, patient.address = (
        shown["gender"],
        shown["postcode"],
        shown["address"],
    )
    patient.deceased_at = shown["deceased_at"]
    patient.deceased = shown["deceased"] == "yes"
    patient.demographics_source_ods = ordered[0].source_org.ods_code if ordered else ""
    very_restricted = policy_table().sensitivity.very_restricted_labels
    # Each source's agreement read from the organisation already loaded, not by
    # listing every organisation with an active one (a query per refresh).
    patient.demographics_disputed = _disputed(
        shown,
        [
            found[i]
            for i, entry in enumerate(ordered)
            if entry.source_org.agreement_active()
            and not very_restricted.intersection(entry.sensitivity)
        ],
    )
    patient.registered_gp_ods = registered
    patient.save()
    if registered != previous and previous:
        audit_event_record(
            action=AuditAction.REGISTRATION_CHANGE,
            actor=asserted_by or AuditActor.system("ingestion"),
            subject=AuditSubject(
                patient_id=patient.public_id, nhs_number=patient.nhs_number, gp_ods=registered
            ),
            detail={"from": previous, "to": registered},
            source_ods=[ods for ods in (previous, registered) if ods],
        )
    return patient


def governance_subject(nhs_number: str) -> Subject | None:
    """The person's shown name and date of birth, for the subject access report they asked for.

    None when no record is held for the number (never held, or opted out).
    One query. The report itself is audited by the governance service.
    """
    found = (
        Patient.objects.filter(nhs_number=nhs_number)
        .values_list("given_names", "family_name", "birth_date")
        .first()
    )
    if found is None:
        return None
    given, family, born = found
    return Subject(f"{given} {family}".strip() or "Name not recorded", born)
