"""A FHIR message's envelope: safe reading of JSON and XML, and the Bundle checks at receipt."""

from __future__ import annotations

import json
from typing import Any, Literal

from lxml import etree

from ingestion.fhir.profile import BUNDLE_TYPES, FHIR_NS
from ingestion.fhir.results import Envelope, FeedRejected
from sharedrecord import fhirjson


def safe_xml(data: bytes) -> etree._Element:
    """Parse XML with no entities, DTDs or network, or refuse it (FeedRejected)."""
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


def local_name(tag: Any) -> str:
    """An element's name without its namespace ("" for comments and instructions)."""
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def read_envelope(data: bytes, media: Literal["json", "xml"], *, max_entries: int) -> Envelope:
    """Check the message is a Bundle we take, cheaply, before it is stored."""
    if media == "xml":
        root = safe_xml(data)
        if local_name(root.tag) != "Bundle" or etree.QName(root.tag).namespace != FHIR_NS:
            raise FeedRejected("not-a-bundle", "The message must be a FHIR Bundle.")
        id_el = root.find(f"{{{FHIR_NS}}}id")
        type_el = root.find(f"{{{FHIR_NS}}}type")
        bundle_id = id_el.get("value", "") if id_el is not None else ""
        bundle_type = type_el.get("value", "") if type_el is not None else ""
        count = len(root.findall(f"{{{FHIR_NS}}}entry"))
    else:
        document = json_document(data)
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


def json_document(data: bytes) -> Any:
    """Parse JSON sent as UTF-8 (a byte-order mark allowed), or refuse it (FeedRejected)."""
    try:
        return fhirjson.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise FeedRejected("invalid-encoding", "The message is not UTF-8.") from exc
    except json.JSONDecodeError as exc:
        raise FeedRejected(
            "invalid-json",
            f"The message is not valid JSON (line {exc.lineno}, column {exc.colno}).",
        ) from exc
