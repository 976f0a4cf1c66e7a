"""Turn stored FHIR resources into what a record page shows: plain, tolerant, pure.

No ORM and no access decisions here (those are in access.py). Every reader
of a stored resource expects partner data to be incomplete: a missing field
shows as absent, never as an error.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from dataclasses import dataclass, field
from typing import Any

import nh3

NO_KNOWN_ALLERGY_CODES = frozenset(
    {
        "716186003",  # No known allergy
        "409137002",  # No known drug allergy
        "428607008",  # No known environmental allergy
        "429625007",  # No known food allergy
    }
)
ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})
CURRENT_MEDICATION = frozenset({"active", "intended", "on-hold"})
UPCOMING_APPOINTMENT = frozenset({"proposed", "pending", "booked", "arrived", "waitlist"})
ABNORMAL_INTERPRETATIONS = frozenset({"H", "HH", "HU", "L", "LL", "LU", "A", "AA", "POS", "<", ">"})


def _text(concept: Any) -> str:
    """A CodeableConcept's words: its text, else the first coding's display, else the code."""
    if not isinstance(concept, dict):
        return ""
    if isinstance(concept.get("text"), str) and concept["text"].strip():
        return str(concept["text"]).strip()
    for coding in concept.get("coding", []) or []:
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return ""


def _texts(concepts: Any) -> str:
    if not isinstance(concepts, list):
        return ""
    return ", ".join(t for t in (_text(c) for c in concepts) if t)


def _codes(concept: Any) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    return {str(c.get("code")) for c in concept.get("coding", []) or [] if isinstance(c, dict)}


def _quantity(q: Any) -> str:
    if not isinstance(q, dict) or q.get("value") is None:
        return ""
    unit = q.get("unit") or q.get("code") or ""
    return f"{q.get('comparator', '')}{q['value']} {unit}".strip()


def _number(q: Any) -> float | None:
    if isinstance(q, dict) and isinstance(q.get("value"), int | float):
        return float(q["value"])
    return None


def _status_of(resource: dict[str, Any]) -> str:
    """clinicalStatus where the type has one (Condition, AllergyIntolerance), else status."""
    codes = sorted(_codes(resource.get("clinicalStatus")))
    return codes[0] if codes else str(resource.get("status", ""))


@dataclass(frozen=True)
class ReferenceRange:
    low: float | None
    high: float | None
    text: str


@dataclass
class ShownEntry:
    """One item as a page shows it, with where it came from."""

    public_id: str
    resource_type: str
    section: str
    title: str
    when: datetime.datetime | None
    status: str
    source_name: str
    source_ods: str
    updated_at: datetime.datetime
    details: list[tuple[str, str]] = field(default_factory=list)
    code: str = ""
    value: float | None = None
    unit: str = ""
    reference: ReferenceRange | None = None
    abnormal: bool = False
    sensitive: bool = False
    has_document: bool = False


def _observation(resource: dict[str, Any], shown: ShownEntry) -> None:
    quantity = resource.get("valueQuantity")
    value = _quantity(quantity) or _text(resource.get("valueCodeableConcept"))
    value = value or str(resource.get("valueString", ""))
    if value:
        shown.details.append(("Result", value))
    shown.value = _number(quantity)
    shown.unit = str((quantity or {}).get("unit") or (quantity or {}).get("code") or "")
    for rng in resource.get("referenceRange", []) or []:
        if not isinstance(rng, dict):
            continue
        low, high = _number(rng.get("low")), _number(rng.get("high"))
        text = str(rng.get("text") or "")
        if not text:
            text = " to ".join(
                x for x in (_quantity(rng.get("low")), _quantity(rng.get("high"))) if x
            )
            if low is None and high is not None:
                text = f"up to {_quantity(rng.get('high'))}"
            elif high is None and low is not None:
                text = f"from {_quantity(rng.get('low'))}"
        shown.reference = ReferenceRange(low, high, text)
        shown.details.append(("Reference range", text))
        break
    flags = {c for i in resource.get("interpretation", []) or [] for c in _codes(i)}
    out_of_range = (
        shown.value is not None
        and shown.reference is not None
        and (
            (shown.reference.low is not None and shown.value < shown.reference.low)
            or (shown.reference.high is not None and shown.value > shown.reference.high)
        )
    )
    shown.abnormal = bool(flags & ABNORMAL_INTERPRETATIONS) or out_of_range
    if flags:
        shown.details.append(("Interpretation", _texts(resource.get("interpretation"))))


def _title(resource: dict[str, Any], resource_type: str) -> str:
    candidates: list[Any] = {
        "MedicationStatement": [resource.get("medicationCodeableConcept")],
        "MedicationRequest": [resource.get("medicationCodeableConcept")],
        "Immunization": [resource.get("vaccineCode")],
        "Encounter": [*(resource.get("type") or []), resource.get("serviceType")],
        "Appointment": [*(resource.get("serviceType") or []), resource.get("appointmentType")],
        "DocumentReference": [resource.get("type")],
        "CareTeam": [],
        "RelatedPerson": [],
    }.get(resource_type, [resource.get("code")])
    for concept in candidates:
        if text := _text(concept):
            return text
    for key in ("title", "name", "description"):
        if isinstance(resource.get(key), str) and resource[key].strip():
            return str(resource[key]).strip()
    if resource_type == "RelatedPerson":
        return _person_name(resource) or "Related person"
    return resource_type


def _person_name(resource: dict[str, Any]) -> str:
    for name in resource.get("name", []) or []:
        if isinstance(name, dict):
            given = " ".join(name.get("given", []) or [])
            text = name.get("text") or f"{given} {name.get('family', '')}".strip()
            if text:
                return str(text)
    return ""


def _details(resource: dict[str, Any], resource_type: str, shown: ShownEntry) -> None:
    add = shown.details.append
    if resource_type == "Observation":
        _observation(resource, shown)
    elif resource_type == "AllergyIntolerance":
        for reaction in resource.get("reaction", []) or []:
            if isinstance(reaction, dict):
                if text := _texts(reaction.get("manifestation")):
                    add(("Reaction", text))
                if reaction.get("severity"):
                    add(("Severity", str(reaction["severity"])))
        if text := _text(resource.get("verificationStatus")):
            add(("Verification", text))
    elif resource_type in ("MedicationStatement", "MedicationRequest"):
        for dosage in resource.get("dosage", resource.get("dosageInstruction", [])) or []:
            if isinstance(dosage, dict) and dosage.get("text"):
                add(("Dose", str(dosage["text"])))
    elif resource_type == "Encounter":
        klass = resource.get("class")
        if isinstance(klass, dict) and (klass.get("display") or klass.get("code")):
            add(("Setting", str(klass.get("display") or klass.get("code"))))
        if text := _texts(resource.get("reasonCode")):
            add(("Reason", text))
        period = resource.get("period") or {}
        if isinstance(period, dict) and period.get("end"):
            add(("Ended", str(period["end"])[:16].replace("T", " ")))
    elif resource_type == "DiagnosticReport":
        if resource.get("conclusion"):
            add(("Conclusion", str(resource["conclusion"])))
    elif resource_type == "CarePlan":
        if resource.get("description"):
            add(("Plan", str(resource["description"])))
    elif resource_type == "RelatedPerson":
        if text := _texts(resource.get("relationship")):
            add(("Relationship", text))
        for telecom in resource.get("telecom", []) or []:
            if isinstance(telecom, dict) and telecom.get("value"):
                add((str(telecom.get("system", "contact")).capitalize(), str(telecom["value"])))
    elif resource_type == "CareTeam":
        for member in resource.get("participant", []) or []:
            if isinstance(member, dict):
                who = (member.get("member") or {}).get("display", "")
                role = _texts(member.get("role"))
                if who or role:
                    add(("Member", ", ".join(x for x in (str(who), role) if x)))
    elif resource_type == "ServiceRequest":
        for performer in resource.get("performer", []) or []:
            if isinstance(performer, dict) and performer.get("display"):
                add(("Referred to", str(performer["display"])))
        if text := _texts(resource.get("reasonCode")):
            add(("Reason", text))
    elif resource_type == "Flag" and (text := _texts(resource.get("category"))):
        add(("Category", text))
    if resource_type == "DocumentReference":
        shown.has_document = any(
            isinstance(c, dict) and isinstance(c.get("attachment"), dict)
            for c in resource.get("content", []) or []
        )
    for note in resource.get("note", []) or []:
        if isinstance(note, dict) and note.get("text"):
            add(("Note", str(note["text"])))


def entry_shown(
    *,
    public_id: str,
    resource_type: str,
    section: str,
    resource: dict[str, Any],
    effective_at: datetime.datetime | None,
    status: str,
    code: str,
    source_name: str,
    source_ods: str,
    updated_at: datetime.datetime,
    sensitive: bool,
) -> ShownEntry:
    """The page's view of one stored resource."""
    shown = ShownEntry(
        public_id=public_id,
        resource_type=resource_type,
        section=section,
        title=_title(resource, resource_type),
        when=effective_at,
        status=_status_of(resource) or status,
        source_name=source_name,
        source_ods=source_ods,
        updated_at=updated_at,
        code=code,
        sensitive=sensitive,
    )
    _details(resource, resource_type, shown)
    return shown


# ------------------------------------------------------------------ trend charts


@dataclass(frozen=True)
class TrendPoint:
    x: float
    y: float
    value: float
    when: datetime.datetime
    abnormal: bool


@dataclass(frozen=True)
class Trend:
    """An inline SVG's worth of one repeated numeric result (drawn by the template)."""

    title: str
    unit: str
    points: tuple[TrendPoint, ...]
    band: tuple[float, float] | None  # the reference range: y of its top, and its height
    low: float
    high: float
    width: int = 480
    height: int = 160

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


def trends_of(results: list[ShownEntry], *, width: int = 480, height: int = 160) -> list[Trend]:
    """One trend per result code with two or more numeric values, oldest to newest."""
    by_code: dict[tuple[str, str], list[ShownEntry]] = {}
    for item in results:
        if item.value is not None and item.when is not None and item.code:
            by_code.setdefault((item.code, item.unit), []).append(item)
    trends = []
    pad = 16.0
    for (_, unit), items in sorted(by_code.items()):
        if len(items) < 2:
            continue
        items.sort(key=lambda i: (i.when, i.public_id))
        values = [i.value for i in items if i.value is not None]
        ref = items[-1].reference
        limits = (ref.low, ref.high) if ref else ()
        bounds = [*values, *(v for v in limits if v is not None)]
        low, high = min(bounds), max(bounds)
        span = (high - low) or 1.0
        first = items[0].when or datetime.datetime.now(datetime.UTC)
        last = items[-1].when or first
        seconds = (last - first).total_seconds() or 1.0

        def y_of(v: float, low: float = low, span: float = span) -> float:
            return height - pad - (v - low) / span * (height - 2 * pad)

        points = tuple(
            TrendPoint(
                x=pad + ((i.when - first).total_seconds() / seconds) * (width - 2 * pad),
                y=y_of(i.value),
                value=i.value,
                when=i.when,
                abnormal=i.abnormal,
            )
            for i in items
            if i.when is not None and i.value is not None
        )
        band = None
        if ref and ref.low is not None and ref.high is not None:
            band = (y_of(ref.high), y_of(ref.low) - y_of(ref.high))
        trends.append(Trend(items[-1].title, unit, points, band, low, high, width, height))
    return trends


# ------------------------------------------------------------------ documents


@dataclass(frozen=True)
class Attachment:
    title: str
    content_type: str
    data: bytes | None  # None when the source holds it (url only)
    url: str


def attachment_of(resource: dict[str, Any]) -> Attachment | None:
    """The first attachment of a DocumentReference, decoded; None if it has none."""
    for content in resource.get("content", []) or []:
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if not isinstance(attachment, dict):
            continue
        data = None
        if isinstance(attachment.get("data"), str):
            try:
                data = base64.b64decode(attachment["data"], validate=True)
            except (binascii.Error, ValueError):
                data = None
        return Attachment(
            title=str(attachment.get("title") or "Document"),
            content_type=str(attachment.get("contentType") or "application/octet-stream")
            .split(";")[0]
            .strip()
            .lower(),
            data=data,
            url=str(attachment.get("url") or ""),
        )
    return None


# Tags a discharge letter needs; no scripts, styles, forms, frames or links out.
SAFE_TAGS = {
    "p", "br", "b", "strong", "i", "em", "u", "ul", "ol", "li", "table", "thead", "tbody",
    "tr", "th", "td", "h1", "h2", "h3", "h4", "h5", "h6", "div", "span", "pre", "blockquote",
    "dl", "dt", "dd", "hr", "caption", "sub", "sup",
}  # fmt: skip


def html_sanitise(markup: str) -> str:
    """Partner HTML made safe to show inside our page (nh3: no script, no links out)."""
    return nh3.clean(markup, tags=SAFE_TAGS, attributes={}, link_rel=None, strip_comments=True)


def document_text(attachment: Attachment) -> tuple[str, str]:
    """("html", safe markup) or ("text", plain text) for what a page can show inline."""
    if attachment.data is None:
        return "", ""
    text = attachment.data.decode("utf-8", errors="replace")
    if attachment.content_type in ("text/html", "application/xhtml+xml"):
        return "html", html_sanitise(text)
    if attachment.content_type.startswith("text/"):
        return "text", text
    return "", ""
