"""Validating one resource: the fhir.resources model (R4B), then the rules it does not enforce.

The only code that imports fhir.resources, pinned to its R4B package (the nearest
to R4 and UK Core).
"""

from __future__ import annotations

import decimal
from copy import deepcopy
from typing import Any, Literal

from fhir.resources.R4B import get_fhir_model_class
from lxml import etree
from pydantic import BaseModel, ValidationError

from ingestion.fhir.entries import RawEntry
from ingestion.fhir.envelope import json_document, local_name, safe_xml
from ingestion.fhir.profile import XHTML_NS
from ingestion.fhir.results import EntryError, EntryIssue, FeedRejected
from ingestion.fhir.rules import extra_rules
from sharedrecord import fhirjson


def _path(loc: tuple[Any, ...], resource_type: str) -> str:
    out = resource_type
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _xml_rules(element: etree._Element, resource_type: str) -> None:
    """XML-only rules: every element has a value or children (ele-1), and no stray text."""

    def walk(node: etree._Element, path: str) -> None:
        for child in node:
            if not isinstance(child.tag, str):  # a comment or processing instruction
                if (child.tail or "").strip():
                    raise EntryError(
                        "xml-text", "FHIR XML elements hold no text, only values.", (path,)
                    )
                continue
            if etree.QName(child).namespace == XHTML_NS:
                continue
            here = f"{path}.{local_name(child.tag)}"
            if (child.text or "").strip() or (child.tail or "").strip():
                raise EntryError(
                    "xml-text", "FHIR XML elements hold no text, only values.", (here,)
                )
            has_children = any(isinstance(c.tag, str) for c in child)
            if child.get("value") is None and not has_children and local_name(child.tag) != "div":
                raise EntryError(
                    "empty-value",
                    "An element has neither a value nor children (ele-1).",
                    (here,),
                )
            walk(child, here)

    if (element.text or "").strip():
        raise EntryError(
            "xml-text", "FHIR XML elements hold no text, only values.", (resource_type,)
        )
    walk(element, resource_type)


def validate(raw: RawEntry) -> dict[str, Any]:
    """Validate with the fhir.resources model; return the resource as FHIR JSON.

    JSON input comes back as the sender wrote it (only its nulls, which FHIR
    JSON does not allow and the model reads as absent, left out): turning the
    validated model back into JSON cost about four times the validation itself
    (shared/PITFALLS.md). XML input has no JSON to keep, so it is the model's.
    """
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
        raise EntryError(
            "invalid-resource", "The resource does not conform to FHIR R4.", paths
        ) from None
    except (ValueError, TypeError, KeyError, etree.LxmlError):
        raise EntryError("invalid-resource", "The resource could not be read as FHIR R4.") from None
    if raw.resource is not None:
        return _without_nulls(raw.resource)
    dumped = dict(instance.model_dump(mode="json", by_alias=True, exclude_none=True))
    return _decimals_as_sent(instance, dumped)


def _decimals_as_sent(model: BaseModel, dumped: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON with each decimal as the XML sent it (5.10, not the float 5.1).

    fhir.resources reads an XML decimal as a Decimal with its digits, and
    writes one with a fraction out as a float (5.1) and a whole one as an int
    (500); this puts back each one with a fraction (5.10, 500.0) that a JSON
    feed's decimal would be kept as (fhirjson.decimal_of). A whole number
    stays the model's int (its text and content hash as before), and so does
    one beyond those limits. Changes `dumped`.
    """
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        if key in dumped:
            dumped[key] = _value_as_sent(getattr(model, name, None), dumped[key])
    return dumped


def _value_as_sent(value: Any, out: Any) -> Any:
    """One field's (or list item's) JSON `out` with its decimals as `value` holds them."""
    if isinstance(value, decimal.Decimal):
        return _as_sent_or_written(value, out)
    if isinstance(value, BaseModel) and isinstance(out, dict):
        return _decimals_as_sent(value, out)
    if isinstance(value, list) and isinstance(out, list) and len(value) == len(out):
        return [_value_as_sent(item, item_out) for item, item_out in zip(value, out, strict=True)]
    return out


def _as_sent_or_written(value: decimal.Decimal, written: Any) -> Any:
    """The Decimal when it has a fraction and fhirjson.decimal_of keeps it; else as written."""
    kept = fhirjson.decimal_of(str(value))
    if isinstance(kept, decimal.Decimal) and kept.is_finite():
        exponent = kept.as_tuple().exponent
        if isinstance(exponent, int) and exponent < 0:
            return kept
    return written


def _without_nulls(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without null properties; the same object when it has none (the usual case).

    Nulls inside arrays stay: they keep a primitive array aligned with its
    `_name` extensions, as FHIR JSON allows.
    """
    # orjson writes the resource in microseconds: most hold no null anywhere.
    maybe = "null" in fhirjson.dumps(resource)
    return resource if not (maybe and _has_null(resource)) else _drop_nulls(resource)


def _has_null(value: Any) -> bool:
    if isinstance(value, dict):
        return any(v is None or _has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    return False


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


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


def validate_resource(data: bytes, media: Literal["json", "xml"]) -> tuple[EntryIssue, ...]:
    """Check one standalone resource with the same rules the feed applies to each entry.

    Returns the problems found (empty when valid). Unreadable input raises FeedRejected.
    """
    if media == "xml":
        element = safe_xml(data)
        raw = RawEntry(0, "", "", "", local_name(element.tag), None, element)
    else:
        document = json_document(data)
        if not isinstance(document, dict):
            raise FeedRejected("not-a-resource", "The document is not a FHIR resource.")
        raw = RawEntry(0, "", "", "", str(document.get("resourceType", "")), document, None)
    try:
        get_fhir_model_class(raw.resource_type)
    except KeyError:
        return (EntryIssue(0, "unknown-type", "Not a FHIR R4 resource type.", ("resourceType",)),)
    try:
        resource = validate(raw)
        extra_rules(
            resource, raw.resource_type, raw.resource if raw.resource is not None else resource
        )
    except EntryError as err:
        return (EntryIssue(0, err.code, err.message, err.paths),)
    return ()
