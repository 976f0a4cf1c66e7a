"""Parsing a whole FHIR message into entries, each linked to its patient, and issues.

Per-entry problems become issues (the rest of the message is kept); only an
unreadable message or envelope raises FeedRejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ingestion.fhir.entries import RawEntry, raw_entries
from ingestion.fhir.envelope import read_envelope
from ingestion.fhir.fields import (
    codes_of,
    content_hash,
    instant,
    nhs_numbers_of,
    primary_coding,
    references_at,
    status_of,
    value_at,
)
from ingestion.fhir.profile import EFFECTIVE_PATHS, ENVELOPE_TYPES, NHS_NUMBER_SYSTEM, SUPPORTED
from ingestion.fhir.results import EntryError, EntryIssue, ParsedBundle, ParsedEntry, PatientLink
from ingestion.fhir.rules import ID_PATTERN, extra_rules, walk
from ingestion.fhir.validation import validate
from sharedrecord.entrydata import EntryData


@dataclass
class _Screened:
    """What screening each entry on its own gave (step 2 of parse_bundle)."""

    accepted: list[tuple[RawEntry, dict[str, Any]]] = field(default_factory=list)
    deletes: list[ParsedEntry] = field(default_factory=list)
    issues: list[EntryIssue] = field(default_factory=list)
    # Every fullUrl that passed its own checks, to its entry's index (whatever
    # became of the entry): a reference to one of them does not dangle.
    full_urls: dict[str, int] = field(default_factory=dict)


def parse_bundle(data: bytes, media: Literal["json", "xml"], *, max_entries: int) -> ParsedBundle:
    """Parse and validate a whole message; per-entry problems become issues, not failures.

    Steps:
    1. Read the envelope: a Bundle of a type we take, within `max_entries`.
    2. Screen each entry on its own: fullUrl absolute and unique, DELETE
       requests, a resource of a type we hold, valid, with an id.
    3. Index this bundle's Patients by every name a reference might use.
    4. Link each accepted entry to its patient (an issue when no reference
       resolves), warn of references that dangle, and read its typed columns.
    5. Return the entries and deletes in bundle order, the issues by entry.
    """
    envelope = read_envelope(data, media, max_entries=max_entries)
    screened = _screen_entries(data, media)
    patients = _patient_index(screened.accepted)
    issues = list(screened.issues)
    entries: list[ParsedEntry] = []
    for raw, resource in screened.accepted:
        link = _patient_link(raw, resource, patients)
        if link is None:
            issues.append(
                EntryIssue(
                    raw.index,
                    "unresolved-patient",
                    "The entry's patient reference does not resolve.",
                    tuple(f"{raw.resource_type}.{p}" for p in SUPPORTED[raw.resource_type][1]),
                )
            )
            continue
        warning = _dangling_references(raw, resource, screened.full_urls)
        if warning is not None:
            issues.append(warning)
        entries.append(_parsed_entry(raw, resource, link))
    return ParsedBundle(
        bundle_id=envelope.bundle_id,
        bundle_type=envelope.bundle_type,
        entry_count=envelope.entry_count,
        entries=tuple(sorted([*entries, *screened.deletes], key=lambda e: e.index)),
        issues=tuple(sorted(issues, key=lambda i: i.index)),
    )


def _screen_entries(data: bytes, media: Literal["json", "xml"]) -> _Screened:
    """Step 2: each entry is accepted, a delete, passed over (an envelope resource) or an issue."""
    screened = _Screened()
    for raw in raw_entries(data, media):
        problem = _full_url_problem(raw, screened.full_urls)
        if problem is not None:
            screened.issues.append(problem)
            continue
        if raw.full_url:
            screened.full_urls[raw.full_url] = raw.index
        if raw.method == "DELETE":
            delete = _delete(raw)
            if isinstance(delete, EntryIssue):
                screened.issues.append(delete)
            else:
                screened.deletes.append(delete)
            continue
        resource = _validated(raw)
        if isinstance(resource, EntryIssue):
            screened.issues.append(resource)
        elif resource is not None:
            screened.accepted.append((raw, resource))
    return screened


def _full_url_problem(raw: RawEntry, seen: dict[str, int]) -> EntryIssue | None:
    """A fullUrl must be absolute (or a urn) and unique in the bundle."""
    if not raw.full_url:
        return None
    where = f"Bundle.entry[{raw.index}].fullUrl"
    if not re.match(r"^(urn:uuid:|urn:oid:|https?://)", raw.full_url):
        return EntryIssue(
            raw.index,
            "relative-fullurl",
            "fullUrl must be an absolute URL or a urn:uuid.",
            (where,),
        )
    if raw.full_url in seen:
        return EntryIssue(
            raw.index, "duplicate-fullurl", f"fullUrl repeats entry {seen[raw.full_url]}.", (where,)
        )
    return None


def _delete(raw: RawEntry) -> ParsedEntry | EntryIssue:
    """A DELETE request of the form Type/id, for a type the record holds."""
    parts = raw.request_url.split("?")[0].strip("/").split("/")
    if len(parts) == 2 and parts[0] in SUPPORTED and ID_PATTERN.match(parts[1]):
        return ParsedEntry(
            index=raw.index,
            data=EntryData(
                resource_type=parts[0],
                source_id=parts[1],
                section=SUPPORTED[parts[0]][0],
                resource={},
                content_hash="",
            ),
            deleted=True,
        )
    return EntryIssue(
        raw.index,
        "unsupported-delete",
        "DELETE needs a request.url of the form Type/id (conditional deletes are not supported).",
        (f"Bundle.entry[{raw.index}].request.url",),
    )


def _validated(raw: RawEntry) -> dict[str, Any] | EntryIssue | None:
    """The entry's resource as valid FHIR JSON, the issue that stops it, or None to pass over.

    Envelope resources (a MessageHeader) travel with a message but are not
    part of a record, so they are passed over without an issue.
    """
    where = f"Bundle.entry[{raw.index}]"
    if raw.holder_error is not None:
        code, text = raw.holder_error
        return EntryIssue(raw.index, code, text, (f"{where}.resource",))
    if not raw.resource_type:
        return EntryIssue(
            raw.index, "missing-resource", "The entry has no resource.", (f"{where}.resource",)
        )
    if raw.resource_type in ENVELOPE_TYPES:
        return None
    if raw.resource_type not in SUPPORTED:
        return EntryIssue(
            raw.index,
            "unsupported-type",
            f"{raw.resource_type} is not held in the shared care record.",
            (f"{where}.resource",),
        )
    try:
        resource = validate(raw)
        extra_rules(
            resource, raw.resource_type, raw.resource if raw.resource is not None else resource
        )
    except EntryError as err:
        return EntryIssue(raw.index, err.code, err.message, err.paths or (f"{where}.resource",))
    if not resource.get("id"):
        return EntryIssue(
            raw.index,
            "missing-id",
            "Each resource needs the id it has in the source system.",
            (f"{raw.resource_type}.id",),
        )
    return resource


def _patient_index(accepted: list[tuple[RawEntry, dict[str, Any]]]) -> dict[str, int]:
    """Step 3: each Patient entry's index under every name a reference might use."""
    patients: dict[str, int] = {}
    for raw, resource in accepted:
        if raw.resource_type == "Patient":
            for name in (raw.full_url, f"Patient/{resource['id']}"):
                if name:
                    patients[name] = raw.index
            if raw.full_url.startswith("http"):
                patients[
                    raw.full_url.rsplit("/", 2)[-2] + "/" + raw.full_url.rsplit("/", 1)[-1]
                ] = raw.index
    return patients


def _patient_link(
    raw: RawEntry, resource: dict[str, Any], patients: dict[str, int]
) -> PatientLink | None:
    """How the entry names its patient (a Patient names itself); None if nothing resolves."""
    if raw.resource_type == "Patient":
        return PatientLink("bundle", str(raw.index))
    link: PatientLink | None = None
    for ref_path in SUPPORTED[raw.resource_type][1]:
        for ref in references_at(resource, ref_path):
            link = link or _resolve(ref, patients)
    return link


def _dangling_references(
    raw: RawEntry, resource: dict[str, Any], full_urls: dict[str, int]
) -> EntryIssue | None:
    """A warning naming conditional references and urn:uuid ones that point outside the bundle."""
    dangling = [
        path
        for path, value in walk(resource, raw.resource_type)
        if path.endswith(".reference")
        and isinstance(value, str)
        and ("?" in value or (value.startswith("urn:uuid:") and value not in full_urls))
    ]
    if not dangling:
        return None
    return EntryIssue(
        raw.index,
        "unresolved-reference",
        "Some references are conditional or point outside the bundle; they are kept as sent.",
        tuple(dangling[:10]),
        severity="warning",
    )


def _parsed_entry(raw: RawEntry, resource: dict[str, Any], link: PatientLink) -> ParsedEntry:
    """The entry with the typed columns the record indexes, read from the valid resource."""
    meta = resource.get("meta", {})
    system, code, display = primary_coding(resource, raw.resource_type)
    effective = None
    for path in EFFECTIVE_PATHS.get(raw.resource_type, ()):
        effective = instant(value_at(resource, path))
        if effective:
            break
    return ParsedEntry(
        index=raw.index,
        data=EntryData(
            resource_type=raw.resource_type,
            source_id=resource["id"],
            section=SUPPORTED[raw.resource_type][0],
            resource=resource,
            content_hash=content_hash(resource),
            version_id=str(meta.get("versionId", ""))[:64],
            source_updated_at=instant(meta.get("lastUpdated")),
            effective_at=effective,
            status=status_of(resource),
            code_system=system,
            code=code,
            code_display=display,
            sensitivity=tuple(
                sorted({str(s.get("code")) for s in meta.get("security", []) if s.get("code")})
            ),
            codes=codes_of(resource),
        ),
        patient=link,
        nhs_numbers=nhs_numbers_of(resource) if raw.resource_type == "Patient" else (),
    )


def _resolve(ref: dict[str, Any], patients: dict[str, int]) -> PatientLink | None:
    reference = ref.get("reference")
    if isinstance(reference, str) and reference:
        if reference in patients:
            return PatientLink("bundle", str(patients[reference]))
        tail = "/".join(reference.rstrip("/").split("/")[-2:])
        if tail in patients:
            return PatientLink("bundle", str(patients[tail]))
        if tail.startswith("Patient/") and "?" not in tail:
            return PatientLink("source-id", tail.split("/", 1)[1])
        if reference.startswith("Patient?identifier="):
            system, _, value = reference.split("=", 1)[1].partition("|")
            if system == NHS_NUMBER_SYSTEM and value:
                return PatientLink("nhs-number", value)
        return None
    identifier = ref.get("identifier")
    if (
        isinstance(identifier, dict)
        and identifier.get("system") == NHS_NUMBER_SYSTEM
        and identifier.get("value")
    ):
        return PatientLink("nhs-number", str(identifier["value"]).replace(" ", ""))
    return None
