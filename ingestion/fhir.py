"""FHIR parsing at the edge: bytes in, our own frozen dataclasses out.

Pure: no ORM, no settings, no network. The only module that imports
fhir.resources, pinned to its R4B package (the nearest to R4 and UK Core).
Errors name field *paths*, never field values, so nothing a partner sent
about a person reaches a receipt, a log or an audit event.

Steps for one message:
1. Decode the envelope (JSON, or XML through a parser that refuses DTDs and
   entities) and check it is a Bundle of a type we take, within limits.
2. For each entry: check the bundle-level rules (fullUrl absolute and unique,
   DELETE requests), validate the resource with its fhir.resources model, then
   the specification's rules structural validation misses (the id form on
   every resource and version id, empty values, Period order, active content
   in any string, narrative XHTML, extensions). In XML, comments and
   processing instructions may stand anywhere XML allows them.
3. Find each entry's patient inside the bundle (urn:uuid fullUrls, relative
   and absolute references, logical identifier references) and note
   dangling or conditional references as warnings.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Literal

from fhir.resources.R4B import get_fhir_model_class
from lxml import etree
from pydantic import ValidationError

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_NS = "http://hl7.org/fhir"
BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "message"})

# Resource type -> (record section, where the patient is referenced).
SUPPORTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "Patient": ("demographics", ()),
    "AllergyIntolerance": ("allergies", ("patient",)),
    "MedicationStatement": ("medications", ("subject",)),
    "MedicationRequest": ("medications", ("subject",)),
    "Condition": ("problems", ("subject",)),
    "Observation": ("results", ("subject",)),
    "DiagnosticReport": ("results", ("subject",)),
    "Encounter": ("encounters", ("subject",)),
    "Procedure": ("procedures", ("subject",)),
    "Immunization": ("immunisations", ("patient",)),
    "CarePlan": ("care-plans", ("subject",)),
    "DocumentReference": ("documents", ("subject",)),
    "ServiceRequest": ("referrals", ("subject",)),
    "Appointment": ("appointments", ("participant[].actor",)),
    "Flag": ("alerts", ("subject",)),
    "RelatedPerson": ("contacts", ("patient",)),
    "CareTeam": ("contacts", ("subject",)),
}
# Envelope resources that travel with a message but are not part of a record.
ENVELOPE_TYPES = frozenset({"MessageHeader"})

# Where each type keeps its clinically meaningful date, first match wins.
EFFECTIVE_PATHS: dict[str, tuple[str, ...]] = {
    "AllergyIntolerance": ("onsetDateTime", "recordedDate"),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
    "MedicationRequest": ("authoredOn",),
    "Condition": ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "Encounter": ("period.start",),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "Immunization": ("occurrenceDateTime", "recorded"),
    "CarePlan": ("period.start", "created"),
    "DocumentReference": ("date", "context.period.start"),
    "ServiceRequest": ("occurrenceDateTime", "authoredOn"),
    "Appointment": ("start", "created"),
    "Flag": ("period.start",),
    "CareTeam": ("period.start",),
    "RelatedPerson": ("period.start",),
}
CODE_PATHS: dict[str, tuple[str, ...]] = {
    "MedicationStatement": ("medicationCodeableConcept",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "Immunization": ("vaccineCode",),
    "Encounter": ("type[0]", "class"),
    "DocumentReference": ("type",),
    "Appointment": ("serviceType[0]", "appointmentType"),
    "CareTeam": ("category[0]",),
    "RelatedPerson": ("relationship[0]",),
}
STATUS_PATHS = ("clinicalStatus", "status")

# Required bindings of FHIR R4 on the fields the record indexes: fhir.resources
# checks a code's form, not its value set.
_GENDER = frozenset({"male", "female", "other", "unknown"})
_REQUEST_STATUS = frozenset(
    {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
)
REQUIRED_CODES: dict[str, dict[str, frozenset[str]]] = {
    "Patient": {"gender": _GENDER},
    "RelatedPerson": {"gender": _GENDER},
    "Observation": {
        "status": frozenset(
            {
                "registered",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "cancelled",
                "entered-in-error",
                "unknown",
            }
        )
    },
    "DiagnosticReport": {
        "status": frozenset(
            {
                "registered",
                "partial",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "appended",
                "cancelled",
                "entered-in-error",
                "unknown",
            }
        )
    },
    "Encounter": {
        "status": frozenset(
            {
                "planned",
                "arrived",
                "triaged",
                "in-progress",
                "onleave",
                "finished",
                "cancelled",
                "entered-in-error",
                "unknown",
            }
        )
    },
    "MedicationStatement": {
        "status": frozenset(
            {
                "active",
                "completed",
                "entered-in-error",
                "intended",
                "stopped",
                "on-hold",
                "unknown",
                "not-taken",
            }
        )
    },
    "MedicationRequest": {
        "status": frozenset(
            {
                "active",
                "on-hold",
                "cancelled",
                "completed",
                "entered-in-error",
                "stopped",
                "draft",
                "unknown",
            }
        )
    },
    "Procedure": {
        "status": frozenset(
            {
                "preparation",
                "in-progress",
                "not-done",
                "on-hold",
                "stopped",
                "completed",
                "entered-in-error",
                "unknown",
            }
        )
    },
    "Immunization": {"status": frozenset({"completed", "entered-in-error", "not-done"})},
    "CarePlan": {"status": _REQUEST_STATUS},
    "ServiceRequest": {"status": _REQUEST_STATUS},
    "DocumentReference": {"status": frozenset({"current", "superseded", "entered-in-error"})},
    "Appointment": {
        "status": frozenset(
            {
                "proposed",
                "pending",
                "booked",
                "arrived",
                "fulfilled",
                "cancelled",
                "noshow",
                "entered-in-error",
                "checked-in",
                "waitlist",
            }
        )
    },
    "Flag": {"status": frozenset({"active", "inactive", "entered-in-error"})},
    "CareTeam": {
        "status": frozenset({"proposed", "active", "suspended", "inactive", "entered-in-error"})
    },
}
# Required CodeableConcept bindings: path -> (code system, allowed codes).
REQUIRED_CONCEPTS: dict[str, dict[str, tuple[str, frozenset[str]]]] = {
    "Condition": {
        "clinicalStatus": (
            "http://terminology.hl7.org/CodeSystem/condition-clinical",
            frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"}),
        ),
        "verificationStatus": (
            "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            frozenset(
                {
                    "unconfirmed",
                    "provisional",
                    "differential",
                    "confirmed",
                    "refuted",
                    "entered-in-error",
                }
            ),
        ),
    },
    "AllergyIntolerance": {
        "clinicalStatus": (
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
            frozenset({"active", "inactive", "resolved"}),
        ),
        "verificationStatus": (
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
            frozenset({"unconfirmed", "confirmed", "refuted", "entered-in-error"}),
        ),
    },
}


def _binding_rules(resource: dict[str, Any], resource_type: str) -> None:
    for field_name, allowed in REQUIRED_CODES.get(resource_type, {}).items():
        value = resource.get(field_name)
        if value is not None and value not in allowed:
            raise _EntryError(
                "invalid-code",
                f"{field_name} is not a code of its required value set.",
                (f"{resource_type}.{field_name}",),
            )
    for field_name, (system, allowed) in REQUIRED_CONCEPTS.get(resource_type, {}).items():
        concept = resource.get(field_name)
        if not isinstance(concept, dict):
            continue
        for i, coding in enumerate(concept.get("coding", [])):
            if coding.get("system") == system and coding.get("code") not in allowed:
                raise _EntryError(
                    "invalid-code",
                    f"{field_name} is not a code of its required value set.",
                    (f"{resource_type}.{field_name}.coding[{i}].code",),
                )


MAX_STRING = 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ACTIVE_CONTENT = re.compile(
    r"<\s*(script|iframe|object|embed|form|style|link|meta|base)\b|\bon[a-z]+\s*=|javascript:",
    re.IGNORECASE,
)


class FeedRejected(Exception):
    """The whole message cannot be taken. `code` is machine-readable; paths, no values."""

    def __init__(self, code: str, message: str, *, status: int = 400, path: str = "Bundle") -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.path = code, message, status, path


@dataclass(frozen=True)
class EntryIssue:
    """One problem with one entry: its index, a reason code and the FHIR paths concerned."""

    index: int
    code: str
    message: str
    paths: tuple[str, ...] = ()
    severity: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class PatientLink:
    """How an entry names its patient: another bundle entry, a source id or an NHS number."""

    kind: Literal["bundle", "source-id", "nhs-number"]
    value: str


@dataclass(frozen=True)
class ParsedEntry:
    index: int
    resource_type: str
    source_id: str
    section: str
    resource: dict[str, Any]
    content_hash: str
    version_id: str = ""
    last_updated: datetime.datetime | None = None
    effective_at: datetime.datetime | None = None
    status: str = ""
    code_system: str = ""
    code: str = ""
    code_display: str = ""
    sensitivity: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()  # "system|code" of every coding anywhere in the resource
    patient: PatientLink | None = None
    nhs_numbers: tuple[str, ...] = ()
    deleted: bool = False


@dataclass(frozen=True)
class ParsedBundle:
    bundle_id: str
    bundle_type: str
    entry_count: int
    entries: tuple[ParsedEntry, ...]
    issues: tuple[EntryIssue, ...] = field(default=())


@dataclass(frozen=True)
class Envelope:
    """What the HTTP edge needs before storing a message: identity and size."""

    bundle_id: str
    bundle_type: str
    entry_count: int


# ---------------------------------------------------------------- envelope


def _safe_xml(data: bytes) -> etree._Element:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise FeedRejected("invalid-xml", "The message is not well-formed XML.") from exc
    if root.getroottree().docinfo.doctype:
        raise FeedRejected("xml-dtd", "XML with a DOCTYPE (DTDs and entities) is not accepted.")
    return root


def _local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def read_envelope(data: bytes, media: Literal["json", "xml"], *, max_entries: int) -> Envelope:
    """Check the message is a Bundle we take, cheaply, before it is stored."""
    if media == "xml":
        root = _safe_xml(data)
        if _local(root.tag) != "Bundle" or etree.QName(root.tag).namespace != FHIR_NS:
            raise FeedRejected("not-a-bundle", "The message must be a FHIR Bundle.")
        id_el = root.find(f"{{{FHIR_NS}}}id")
        type_el = root.find(f"{{{FHIR_NS}}}type")
        bundle_id = id_el.get("value", "") if id_el is not None else ""
        bundle_type = type_el.get("value", "") if type_el is not None else ""
        count = len(root.findall(f"{{{FHIR_NS}}}entry"))
    else:
        document = _json(data)
        if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
            raise FeedRejected("not-a-bundle", "The message must be a FHIR Bundle.")
        bundle_id = document.get("id") if isinstance(document.get("id"), str) else ""
        bundle_type = document.get("type") if isinstance(document.get("type"), str) else ""
        entries = document.get("entry", [])
        count = len(entries) if isinstance(entries, list) else -1
        if count < 0:
            raise FeedRejected(
                "invalid-bundle", "Bundle.entry must be an array.", path="Bundle.entry"
            )
    if bundle_type not in BUNDLE_TYPES:
        raise FeedRejected(
            "unsupported-bundle-type",
            "Bundle.type must be transaction, batch, collection or message.",
            path="Bundle.type",
        )
    if count == 0:
        raise FeedRejected("empty-bundle", "The Bundle has no entries.", path="Bundle.entry")
    if count > max_entries:
        raise FeedRejected(
            "too-many-entries",
            f"The Bundle has {count} entries; the limit is {max_entries}. Split it.",
            status=413,
            path="Bundle.entry",
        )
    return Envelope(bundle_id=bundle_id or "", bundle_type=bundle_type, entry_count=count)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise FeedRejected("invalid-encoding", "The message is not UTF-8.") from exc
    except json.JSONDecodeError as exc:
        raise FeedRejected(
            "invalid-json",
            f"The message is not valid JSON (line {exc.lineno}, column {exc.colno}).",
        ) from exc


# ---------------------------------------------------------------- entries


@dataclass
class _RawEntry:
    index: int
    full_url: str
    method: str
    request_url: str
    resource_type: str
    resource: dict[str, Any] | None  # JSON input
    xml: etree._Element | None  # XML input
    holder_error: tuple[str, str] | None = None  # XML: (code, message) about <resource> itself


def _raw_entries(data: bytes, media: Literal["json", "xml"]) -> Iterator[_RawEntry]:
    if media == "xml":
        root = _safe_xml(data)
        for index, entry in enumerate(root.findall(f"{{{FHIR_NS}}}entry")):
            full_url = entry.find(f"{{{FHIR_NS}}}fullUrl")
            request = entry.find(f"{{{FHIR_NS}}}request")
            method = url = ""
            if request is not None:
                m, u = request.find(f"{{{FHIR_NS}}}method"), request.find(f"{{{FHIR_NS}}}url")
                method = m.get("value", "") if m is not None else ""
                url = u.get("value", "") if u is not None else ""
            holder = entry.find(f"{{{FHIR_NS}}}resource")
            resource, holder_error = _held_resource(holder)
            yield _RawEntry(
                index=index,
                full_url=full_url.get("value", "") if full_url is not None else "",
                method=method.upper(),
                request_url=url,
                resource_type=_local(resource.tag) if resource is not None else "",
                resource=None,
                xml=resource,
                holder_error=holder_error,
            )
        return
    document = _json(data)
    for index, entry in enumerate(document.get("entry", [])):
        if not isinstance(entry, dict):
            yield _RawEntry(index, "", "", "", "", None, None)
            continue
        req: dict[str, Any] = entry["request"] if isinstance(entry.get("request"), dict) else {}
        body: dict[str, Any] | None = (
            entry["resource"] if isinstance(entry.get("resource"), dict) else None
        )
        full_url = entry.get("fullUrl")
        yield _RawEntry(
            index=index,
            full_url=full_url if isinstance(full_url, str) else "",
            method=str(req.get("method", "")).upper(),
            request_url=str(req.get("url", "")),
            resource_type=str(body.get("resourceType", "")) if body else "",
            resource=body,
            xml=None,
        )


def _held_resource(
    holder: etree._Element | None,
) -> tuple[etree._Element | None, tuple[str, str] | None]:
    """The one resource inside an XML <resource> element, and what is wrong around it.

    Comments and processing instructions may stand anywhere XML allows them,
    so they are passed over, not taken for the resource.
    """
    if holder is None:
        return None, None
    elements = [child for child in holder if isinstance(child.tag, str)]
    stray = (holder.text or "").strip() or any((c.tail or "").strip() for c in holder)
    if len(elements) > 1:
        return None, ("invalid-resource", "A resource element holds more than one resource.")
    if stray:
        return None, ("xml-text", "FHIR XML elements hold no text, only values.")
    return (elements[0] if elements else None), None


def _path(loc: tuple[Any, ...], resource_type: str) -> str:
    out = resource_type
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


XHTML_NS = "http://www.w3.org/1999/xhtml"


def _xml_rules(element: etree._Element, resource_type: str) -> None:
    """XML-only rules: every element has a value or children (ele-1), and no stray text."""

    def walk(node: etree._Element, path: str) -> None:
        for child in node:
            if not isinstance(child.tag, str):  # a comment or processing instruction
                if (child.tail or "").strip():
                    raise _EntryError(
                        "xml-text", "FHIR XML elements hold no text, only values.", (path,)
                    )
                continue
            if etree.QName(child).namespace == XHTML_NS:
                continue
            here = f"{path}.{_local(child.tag)}"
            if (child.text or "").strip() or (child.tail or "").strip():
                raise _EntryError(
                    "xml-text", "FHIR XML elements hold no text, only values.", (here,)
                )
            has_children = any(isinstance(c.tag, str) for c in child)
            if child.get("value") is None and not has_children and _local(child.tag) != "div":
                raise _EntryError(
                    "empty-value",
                    "An element has neither a value nor children (ele-1).",
                    (here,),
                )
            walk(child, here)

    if (element.text or "").strip():
        raise _EntryError(
            "xml-text", "FHIR XML elements hold no text, only values.", (resource_type,)
        )
    walk(element, resource_type)


def _validate(raw: _RawEntry) -> dict[str, Any]:
    """Validate with the fhir.resources model; return the resource as FHIR JSON."""
    model = get_fhir_model_class(raw.resource_type)
    if raw.xml is not None:
        _xml_rules(raw.xml, raw.resource_type)
    try:
        if raw.xml is not None:
            instance = model.model_validate_xml(etree.tostring(_without_comments(raw.xml)))
        else:
            instance = model.model_validate(raw.resource)
    except ValidationError as exc:
        paths = tuple(
            dict.fromkeys(
                _path(tuple(p for p in err["loc"] if p != "__root__"), raw.resource_type)
                for err in exc.errors()
            )
        )
        raise _EntryError(
            "invalid-resource", "The resource does not conform to FHIR R4.", paths
        ) from None
    except (ValueError, TypeError, KeyError, etree.LxmlError):
        raise _EntryError(
            "invalid-resource", "The resource could not be read as FHIR R4."
        ) from None
    return dict(instance.model_dump(mode="json", by_alias=True, exclude_none=True))


def _without_comments(element: etree._Element) -> etree._Element:
    """A copy without the comments and processing instructions outside the narrative.

    fhir.resources cannot read XML holding them. Inside the narrative they are
    kept: the narrative rules allow comments there and refuse instructions.
    The text after each one is only whitespace (_xml_rules checked).
    """
    copy = deepcopy(element)
    for node in list(copy.iter(etree.Comment, etree.ProcessingInstruction)):
        parent = node.getparent()
        if parent is not None and etree.QName(parent).namespace != XHTML_NS:
            parent.remove(node)
    return copy


class _EntryError(Exception):
    def __init__(self, code: str, message: str, paths: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.code, self.message, self.paths = code, message, paths


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _walk(child, f"{path}.{key}")
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _walk(child, f"{path}[{i}]")


def _period_reversed(start: str, end: str) -> bool:
    """per-1: start <= end, with FHIRPath's rule that values of different precision
    which agree as far as both go cannot be ordered (so the invariant fails)."""
    if len(start) >= 19 and len(end) >= 19:
        first, last = _instant(start), _instant(end)
        return bool(first and last and last < first)
    width = min(len(start), len(end), 19)
    if end[:width] != start[:width]:
        return end[:width] < start[:width]
    return len(start) != len(end)


def _extra_rules(resource: dict[str, Any], resource_type: str, source: Any) -> None:
    """Rules pydantic validation does not enforce (the FHIR validator's invariants).

    In this order: ids, required bindings, empty and over-long values, Period
    order, active content in any string, narrative XHTML, extensions.
    """
    _id_rules(resource, resource_type)
    _binding_rules(resource, resource_type)
    problems: list[str] = []
    for path, value in _walk(source, resource_type):
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise _EntryError("too-long", "A string is longer than FHIR allows (1 MB).", (path,))
        if value in ([], {}) or (isinstance(value, str) and not value.strip()):
            problems.append(path)
    if problems:
        raise _EntryError(
            "empty-value",
            "FHIR does not allow empty arrays, objects or strings.",
            tuple(problems[:10]),
        )
    for path, value in _walk(resource, resource_type):
        if (
            isinstance(value, dict)
            and isinstance(value.get("start"), str)
            and isinstance(value.get("end"), str)
        ) and _period_reversed(value["start"], value["end"]):
            raise _EntryError("period-order", "A Period ends before it starts (per-1).", (path,))
        if (
            isinstance(value, str)
            and (path.endswith(".div") or "<" in value)
            and _ACTIVE_CONTENT.search(value)
        ):
            raise _EntryError(
                "active-content", "Narrative or text holds script or active HTML.", (path,)
            )
    for path, inner in _resources(resource, resource_type):
        text = inner.get("text")
        if isinstance(text, dict) and isinstance(text.get("div"), str):
            problem = narrative_problem(text["div"])
            if problem is not None:
                raise _EntryError(problem[0], problem[1], (f"{path}.text.div",))
    _extension_rules(resource, resource_type, nested=False)


def _resources(resource: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The resource and those contained in it (dom-2: contained ones hold no more)."""
    yield path, resource
    contained = resource.get("contained")
    for i, inner in enumerate(contained if isinstance(contained, list) else []):
        if isinstance(inner, dict):
            yield from _resources(inner, f"{path}.contained[{i}]")


def _id_rules(resource: dict[str, Any], resource_type: str) -> None:
    """The id type's rule, [A-Za-z0-9-.]{1,64}, on every resource id and meta.versionId."""
    for path, inner in _resources(resource, resource_type):
        meta = inner.get("meta")
        for where, value in (
            ("id", inner.get("id")),
            ("meta.versionId", meta.get("versionId") if isinstance(meta, dict) else None),
        ):
            if value is not None and not (isinstance(value, str) and _ID.match(value)):
                raise _EntryError(
                    "invalid-id", "Ids are 1-64 of A-Z a-z 0-9 - .", (f"{path}.{where}",)
                )


# ---------------------------------------------------------------- extensions

_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S")


def _extension_rules(value: Any, path: str, *, nested: bool) -> None:
    """Extensions anywhere (resources, datatypes, primitives' `_x`): url and ext-1.

    An extension's url is required and absolute, except for the parts of a
    complex extension (Extension.extension), whose url names the part
    ("ombCategory") relative to the extension's own. Each has a value or
    nested extensions, not both and not neither (ext-1).
    """
    if isinstance(value, list):
        for i, item in enumerate(value):
            _extension_rules(item, f"{path}[{i}]", nested=nested)
        return
    if not isinstance(value, dict):
        return
    for key, child in value.items():
        here = f"{path}.{key}"
        if key not in ("extension", "modifierExtension") or not isinstance(child, list):
            _extension_rules(child, here, nested=False)
            continue
        for i, extension in enumerate(child):
            if not isinstance(extension, dict):
                continue
            where = f"{here}[{i}]"
            url = extension.get("url")
            if not isinstance(url, str) or not url.strip():
                raise _EntryError(
                    "invalid-extension", "An extension needs a url.", (f"{where}.url",)
                )
            if not (nested and key == "extension") and not _ABSOLUTE_URI.match(url):
                raise _EntryError(
                    "invalid-extension",
                    "An extension's url must be absolute (only a complex extension's parts "
                    "may use a relative name).",
                    (f"{where}.url",),
                )
            has_value = any(k.startswith(("value", "_value")) for k in extension)
            if has_value == bool(extension.get("extension")):
                raise _EntryError(
                    "invalid-extension",
                    "An extension has either a value or nested extensions, not both and "
                    "not neither (ext-1).",
                    (where,),
                )
            for part, inner in extension.items():
                if part == "extension":
                    _extension_rules({"extension": inner}, where, nested=True)
                elif part != "url":
                    _extension_rules(inner, f"{where}.{part}", nested=False)


# ---------------------------------------------------------------- narrative
# The narrative page of FHIR R4 and its invariants txt-1 and txt-2: an XHTML
# fragment, well-formed, whose root is a div in the XHTML namespace, holding
# only the basic formatting elements and attributes of HTML 4 (chapters 7-11
# and 15), links, images, tables and style attributes; no head or body,
# scripts, forms, frames, objects, event attributes, external stylesheets or
# other external references, and some text or an image. The lists are those
# of txt-1's XPath and of the HL7 Java validator (XhtmlValidator).

_NARRATIVE_ELEMENTS = frozenset({
    "a", "abbr", "acronym", "address", "b", "bdo", "big", "blockquote", "br", "caption",
    "cite", "code", "col", "colgroup", "dd", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "li", "map", "area", "ol", "p", "pre", "q", "samp",
    "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead",
    "tr", "tt", "ul", "var", "kbd",
})  # fmt: skip
# Elements that run or fetch something: named "active content" in the issue.
_ACTIVE_ELEMENTS = frozenset({
    "script", "noscript", "iframe", "frame", "frameset", "object", "embed", "applet", "param",
    "form", "input", "button", "select", "option", "textarea", "label", "fieldset", "style",
    "link", "meta", "base", "svg", "math", "audio", "video", "source", "track", "canvas",
})  # fmt: skip
_NARRATIVE_ATTRIBUTES = frozenset({
    "title", "style", "class", "id", "lang", "xml:lang", "xml:space", "dir", "accesskey",
    "tabindex", "span", "width", "height", "align", "valign", "char", "charoff", "abbr",
    "axis", "headers", "scope", "rowspan", "colspan", "bgcolor", "border", "cellhalign",
    "cellpadding", "cellspacing", "cellvalign", "compact", "frame", "hspace", "vspace",
    "nowrap", "rules", "summary", "start", "value", "type",
})  # fmt: skip
_ELEMENT_ATTRIBUTES = {
    "a": frozenset({"href", "name", "charset", "hreflang", "rel", "rev", "shape", "coords"}),
    "area": frozenset({"href", "nohref", "alt", "shape", "coords"}),
    "img": frozenset({"src", "alt", "longdesc", "usemap", "ismap"}),
    "map": frozenset(["name"]),
    "blockquote": frozenset(["cite"]),
    "q": frozenset(["cite"]),
}
_LINK_ATTRIBUTES = frozenset(["href", "cite", "longdesc"])  # followed only on a click
_ACTIVE_SCHEMES = frozenset(["javascript", "vbscript", "data", "livescript", "mocha"])
_URL_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_IMAGE_DATA = re.compile(r"^data:image/[a-z0-9.+\-]+(;[a-z0-9=.\-]+)*(;base64)?,", re.IGNORECASE)
_STYLE_ACTIVE = re.compile(r"expression\s*\(|javascript:|behaviou?r\s*:|-moz-binding|\\", re.I)
_STYLE_URL = re.compile(r"url\s*\(\s*['\"]?\s*([^'\")\s]*)|@import|image-set\s*\(", re.I)
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_DIV_START = re.compile(r"^\s*<div[\s/>]")
_INVALID = "invalid-narrative"


def narrative_problem(div: str) -> tuple[str, str] | None:
    """What the FHIR narrative rules refuse in this div, as (code, message), or None.

    Codes: `invalid-narrative` (not the XHTML the rules allow), `active-content`
    (script, event attributes, javascript: and the like), `external-reference`
    (something a browser would fetch on its own: an image or stylesheet from
    elsewhere). Messages never quote the content.
    """
    if not _DIV_START.match(div):
        return _INVALID, "The narrative must be one XHTML div element (txt-1)."
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(div.encode("utf-8"), parser=parser)
    except etree.XMLSyntaxError:
        return _INVALID, (
            "The narrative is not well-formed XHTML (HTML entities such as &nbsp; are not "
            "XML: use the characters)."
        )
    if root.getprevious() is not None or root.getnext() is not None:
        return _INVALID, "The narrative must be one XHTML div element (txt-1)."
    if root.tag != f"{{{XHTML_NS}}}div":
        return _INVALID, "The narrative's root must be a div in the XHTML namespace."
    for node in root.iter():
        problem = _narrative_node_problem(node)
        if problem is not None:
            return problem
    text = str(root.xpath("normalize-space(string(.))"))
    if not text and root.find(f".//{{{XHTML_NS}}}img") is None:
        return _INVALID, "The narrative has no text or image (txt-2)."
    return None


def _narrative_node_problem(node: etree._Element) -> tuple[str, str] | None:
    if node.tag is etree.ProcessingInstruction:
        return _INVALID, "The narrative holds a processing instruction."
    if not isinstance(node.tag, str):
        return None  # a comment: allowed
    name = etree.QName(node)
    local = name.localname.lower()
    if local in _ACTIVE_ELEMENTS:
        return "active-content", "The narrative holds an element that runs or fetches content."
    if name.namespace != XHTML_NS or name.localname not in _NARRATIVE_ELEMENTS:
        return _INVALID, "The narrative holds an element the FHIR narrative rules do not allow."
    for attribute, value in node.attrib.items():
        qualified = etree.QName(attribute)
        key = qualified.localname
        if qualified.namespace == _XML_NS:
            key = f"xml:{key}"
        elif qualified.namespace is not None:
            return _INVALID, "The narrative holds an attribute the FHIR rules do not allow."
        if key.lower().startswith("on"):
            return "active-content", "The narrative holds an event attribute."
        if key not in _NARRATIVE_ATTRIBUTES and key not in _ELEMENT_ATTRIBUTES.get(local, ()):
            return _INVALID, "The narrative holds an attribute the FHIR rules do not allow."
        problem = _narrative_value_problem(local, key, value)
        if problem is not None:
            return problem
    return None


def _narrative_value_problem(element: str, attribute: str, value: str) -> tuple[str, str] | None:
    # Browsers ignore ASCII whitespace and control characters inside a URL's scheme.
    compact = re.sub(r"[\x00-\x20]", "", value).lower()
    scheme_match = _URL_SCHEME.match(compact)
    scheme = scheme_match.group(1) if scheme_match else ""
    if attribute in _LINK_ATTRIBUTES and scheme in _ACTIVE_SCHEMES:
        return "active-content", "The narrative holds a script or data link."
    if attribute == "src" and scheme in _ACTIVE_SCHEMES - {"data"}:
        return "active-content", "The narrative holds a script link."
    if element == "img" and attribute in ("src", "usemap"):
        inline = _IMAGE_DATA.match(compact) is not None or compact.startswith("#")
        if not inline:
            return "external-reference", (
                "A narrative image must be inline (a data: URL) or a contained resource "
                "(#id), never fetched from elsewhere."
            )
    if attribute == "style":
        if _STYLE_ACTIVE.search(value):
            return "active-content", "A style attribute holds script or an escape."
        for match in _STYLE_URL.finditer(value):
            target = (match.group(1) or "").lower()
            if not (target.startswith("#") or _IMAGE_DATA.match(target)):
                return "external-reference", "A style attribute refers to something elsewhere."
    return None


def _get(resource: dict[str, Any], path: str) -> Any:
    value: Any = resource
    for part in path.split("."):
        index = None
        if part.endswith("]"):
            part, _, rest = part.partition("[")
            index = int(rest[:-1])
        value = value.get(part) if isinstance(value, dict) else None
        if index is not None:
            value = value[index] if isinstance(value, list) and len(value) > index else None
        if value is None:
            return None
    return value


def _instant(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    for form in (
        text,
        text + "-01-01" if len(text) == 4 else None,
        text + "-01" if len(text) == 7 else None,
    ):
        if not form:
            continue
        try:
            parsed = datetime.datetime.fromisoformat(form)
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
    return None


def _coding(resource: dict[str, Any], resource_type: str) -> tuple[str, str, str]:
    for path in CODE_PATHS.get(resource_type, ("code",)):
        concept = _get(resource, path)
        if isinstance(concept, dict):
            codings = concept.get("coding") if "coding" in concept else [concept]
            for coding in codings or []:
                if isinstance(coding, dict) and coding.get("code"):
                    return (
                        str(coding.get("system", ""))[:200],
                        str(coding["code"])[:64],
                        str(coding.get("display") or concept.get("text") or "")[:400],
                    )
            if concept.get("text"):
                return "", "", str(concept["text"])[:400]
    return "", "", ""


def _status(resource: dict[str, Any]) -> str:
    verification = resource.get("verificationStatus")
    if isinstance(verification, dict) and any(
        c.get("code") == "entered-in-error" for c in verification.get("coding", [])
    ):
        return "entered-in-error"
    for path in STATUS_PATHS:
        value = resource.get(path)
        if isinstance(value, str):
            return value[:40]
        if isinstance(value, dict):
            for coding in value.get("coding", []):
                if coding.get("code"):
                    return str(coding["code"])[:40]
    return ""


def _references(resource: dict[str, Any], path: str) -> list[dict[str, Any]]:
    if path.endswith(".actor") and path.startswith("participant[]"):
        return [
            p["actor"] for p in resource.get("participant", []) if isinstance(p.get("actor"), dict)
        ]
    ref = resource.get(path)
    return [ref] if isinstance(ref, dict) else []


def content_hash(resource: dict[str, Any]) -> str:
    """Hash of the resource without meta (a re-send with a new lastUpdated is unchanged)."""
    body = {k: v for k, v in resource.items() if k != "meta"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def nhs_numbers_of(resource: dict[str, Any]) -> tuple[str, ...]:
    """The NHS numbers a Patient resource carries (as sent: spaces removed, not yet checked)."""
    found = []
    for identifier in resource.get("identifier", []):
        if isinstance(identifier, dict) and identifier.get("system") == NHS_NUMBER_SYSTEM:
            found.append(str(identifier.get("value", "")).replace(" ", ""))
    return tuple(dict.fromkeys(found))


def validate_resource(data: bytes, media: Literal["json", "xml"]) -> tuple[EntryIssue, ...]:
    """Check one standalone resource with the same rules the feed applies to each entry.

    Returns the problems found (empty when valid). Unreadable input raises FeedRejected.
    """
    if media == "xml":
        element = _safe_xml(data)
        raw = _RawEntry(0, "", "", "", _local(element.tag), None, element)
    else:
        document = _json(data)
        if not isinstance(document, dict):
            raise FeedRejected("not-a-resource", "The document is not a FHIR resource.")
        raw = _RawEntry(0, "", "", "", str(document.get("resourceType", "")), document, None)
    try:
        get_fhir_model_class(raw.resource_type)
    except KeyError:
        return (EntryIssue(0, "unknown-type", "Not a FHIR R4 resource type.", ("resourceType",)),)
    try:
        resource = _validate(raw)
        _extra_rules(
            resource, raw.resource_type, raw.resource if raw.resource is not None else resource
        )
    except _EntryError as err:
        return (EntryIssue(0, err.code, err.message, err.paths),)
    return ()


def parse_bundle(data: bytes, media: Literal["json", "xml"], *, max_entries: int) -> ParsedBundle:
    """Parse and validate a whole message; per-entry problems become issues, not failures."""
    envelope = read_envelope(data, media, max_entries=max_entries)
    issues: list[EntryIssue] = []
    accepted: list[tuple[_RawEntry, dict[str, Any]]] = []
    seen_urls: dict[str, int] = {}
    deletes: list[ParsedEntry] = []
    for raw in _raw_entries(data, media):
        where = f"Bundle.entry[{raw.index}]"
        if raw.full_url:
            if not re.match(r"^(urn:uuid:|urn:oid:|https?://)", raw.full_url):
                issues.append(
                    EntryIssue(
                        raw.index,
                        "relative-fullurl",
                        "fullUrl must be an absolute URL or a urn:uuid.",
                        (f"{where}.fullUrl",),
                    )
                )
                continue
            if raw.full_url in seen_urls:
                issues.append(
                    EntryIssue(
                        raw.index,
                        "duplicate-fullurl",
                        f"fullUrl repeats entry {seen_urls[raw.full_url]}.",
                        (f"{where}.fullUrl",),
                    )
                )
                continue
            seen_urls[raw.full_url] = raw.index
        if raw.method == "DELETE":
            parts = raw.request_url.split("?")[0].strip("/").split("/")
            if len(parts) == 2 and parts[0] in SUPPORTED and _ID.match(parts[1]):
                deletes.append(
                    ParsedEntry(
                        index=raw.index,
                        resource_type=parts[0],
                        source_id=parts[1],
                        section=SUPPORTED[parts[0]][0],
                        resource={},
                        content_hash="",
                        deleted=True,
                    )
                )
            else:
                issues.append(
                    EntryIssue(
                        raw.index,
                        "unsupported-delete",
                        "DELETE needs a request.url of the form Type/id "
                        "(conditional deletes are not supported).",
                        (f"{where}.request.url",),
                    )
                )
            continue
        if raw.holder_error is not None:
            code, text = raw.holder_error
            issues.append(EntryIssue(raw.index, code, text, (f"{where}.resource",)))
            continue
        if not raw.resource_type:
            issues.append(
                EntryIssue(
                    raw.index,
                    "missing-resource",
                    "The entry has no resource.",
                    (f"{where}.resource",),
                )
            )
            continue
        if raw.resource_type in ENVELOPE_TYPES:
            continue
        if raw.resource_type not in SUPPORTED:
            issues.append(
                EntryIssue(
                    raw.index,
                    "unsupported-type",
                    f"{raw.resource_type} is not held in the shared care record.",
                    (f"{where}.resource",),
                )
            )
            continue
        try:
            resource = _validate(raw)
            _extra_rules(
                resource, raw.resource_type, raw.resource if raw.resource is not None else resource
            )
        except _EntryError as err:
            issues.append(
                EntryIssue(raw.index, err.code, err.message, err.paths or (f"{where}.resource",))
            )
            continue
        if not resource.get("id"):
            issues.append(
                EntryIssue(
                    raw.index,
                    "missing-id",
                    "Each resource needs the id it has in the source system.",
                    (f"{raw.resource_type}.id",),
                )
            )
            continue
        accepted.append((raw, resource))

    # Index this bundle's Patients by every name a reference might use.
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

    entries: list[ParsedEntry] = []
    for raw, resource in accepted:
        section, ref_paths = SUPPORTED[raw.resource_type]
        link: PatientLink | None = None
        for ref_path in ref_paths:
            for ref in _references(resource, ref_path):
                link = link or _resolve(ref, patients)
        if ref_paths and link is None:
            issues.append(
                EntryIssue(
                    raw.index,
                    "unresolved-patient",
                    "The entry's patient reference does not resolve.",
                    tuple(f"{raw.resource_type}.{p}" for p in ref_paths),
                )
            )
            continue
        dangling = [
            path
            for path, value in _walk(resource, raw.resource_type)
            if path.endswith(".reference")
            and isinstance(value, str)
            and ("?" in value or (value.startswith("urn:uuid:") and value not in seen_urls))
        ]
        if dangling:
            issues.append(
                EntryIssue(
                    raw.index,
                    "unresolved-reference",
                    "Some references are conditional or point outside the bundle; "
                    "they are kept as sent.",
                    tuple(dangling[:10]),
                    severity="warning",
                )
            )
        meta = resource.get("meta", {})
        system, code, display = _coding(resource, raw.resource_type)
        effective = None
        for path in EFFECTIVE_PATHS.get(raw.resource_type, ()):
            effective = _instant(_get(resource, path))
            if effective:
                break
        entries.append(
            ParsedEntry(
                index=raw.index,
                resource_type=raw.resource_type,
                source_id=resource["id"],
                section=section,
                resource=resource,
                content_hash=content_hash(resource),
                version_id=str(meta.get("versionId", ""))[:64],
                last_updated=_instant(meta.get("lastUpdated")),
                effective_at=effective,
                status=_status(resource),
                code_system=system,
                code=code,
                code_display=display,
                sensitivity=tuple(
                    sorted({str(s.get("code")) for s in meta.get("security", []) if s.get("code")})
                ),
                codes=codes_of(resource),
                patient=link
                if raw.resource_type != "Patient"
                else PatientLink("bundle", str(raw.index)),
                nhs_numbers=nhs_numbers_of(resource) if raw.resource_type == "Patient" else (),
            )
        )
    return ParsedBundle(
        bundle_id=envelope.bundle_id,
        bundle_type=envelope.bundle_type,
        entry_count=envelope.entry_count,
        entries=tuple(sorted([*entries, *deletes], key=lambda e: e.index)),
        issues=tuple(sorted(issues, key=lambda i: i.index)),
    )


def codes_of(resource: dict[str, Any]) -> tuple[str, ...]:
    """Every coding in the resource as "system|code", sorted and distinct.

    All of them, not only the primary code: the access policy restricts an
    item when any coding is on a sensitive list (an HIV test's LOINC code, an
    antiretroviral's medicine code, a reason code), whatever labels the
    sender set.
    """
    found: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                if key == "coding" and isinstance(child, list):
                    for coding in child:
                        if isinstance(coding, dict) and coding.get("code"):
                            found.add(f"{coding.get('system', '')}|{coding['code']}"[:300])
                visit(child)
        elif isinstance(value, list):
            for child in value:
                visit(child)

    visit(resource)
    return tuple(sorted(found))


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
