"""A Bundle's entries as sent: fullUrl, request and resource, before any validation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from lxml import etree

from ingestion.fhir.envelope import json_document, local_name, safe_xml
from ingestion.fhir.profile import FHIR_NS
from sharedrecord import fhirjson


@dataclass
class RawEntry:
    index: int
    full_url: str
    method: str
    request_url: str
    resource_type: str
    resource: dict[str, Any] | None  # JSON input
    xml: etree._Element | None  # XML input
    holder_error: tuple[str, str] | None = None  # XML: (code, message) about <resource> itself


def raw_entries(data: bytes, media: Literal["json", "xml"]) -> Iterator[RawEntry]:
    """Each entry of a Bundle as sent (fullUrl, request, resource), JSON or XML, in order."""
    if media == "xml":
        root = safe_xml(data)
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
            yield RawEntry(
                index=index,
                full_url=full_url.get("value", "") if full_url is not None else "",
                method=method.upper(),
                request_url=url,
                resource_type=local_name(resource.tag) if resource is not None else "",
                resource=None,
                xml=resource,
                holder_error=holder_error,
            )
        return
    document = json_document(data)
    for index, entry in enumerate(document.get("entry", [])):
        if not isinstance(entry, dict):
            yield RawEntry(index, "", "", "", "", None, None)
            continue
        req: dict[str, Any] = entry["request"] if isinstance(entry.get("request"), dict) else {}
        body: dict[str, Any] | None = (
            entry["resource"] if isinstance(entry.get("resource"), dict) else None
        )
        full_url = entry.get("fullUrl")
        yield RawEntry(
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


def resources_as_sent(data: bytes, media: Literal["json", "xml"]) -> list[tuple[int, Any]]:
    """Each entry's resource as sent, by index: a JSON object, or an XML element as bytes.

    For tracing a failure to an entry, so nothing is validated; a message that
    cannot be read gives none.
    """
    try:
        if media == "xml":
            parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
            root = etree.fromstring(data, parser=parser)
            entries = root.findall(f"{{{FHIR_NS}}}entry")
            holders = [(i, e.find(f"{{{FHIR_NS}}}resource")) for i, e in enumerate(entries)]
            return [(i, etree.tostring(h[0])) for i, h in holders if h is not None and len(h)]
        return bundle_resources(fhirjson.loads(data.decode("utf-8-sig")))
    except (ValueError, RecursionError, AttributeError, etree.LxmlError):
        return []


def bundle_resources(document: Any) -> list[tuple[int, Any]]:
    """Each entry's resource in a Bundle already read as JSON, by index (as sent)."""
    items = document.get("entry", [])
    return [(i, e.get("resource")) for i, e in enumerate(items) if isinstance(e, dict)]
