"""Taking one person's entries out of a stored FHIR message (the opt-out purge).

Pure: the caller decides which messages to redact and saves the result.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from lxml import etree

from ingestion.fhir.profile import FHIR_NS
from sharedrecord import fhirjson


def redact_person(payload: bytes, media: Literal["json", "xml"], nhs_number: str) -> bytes:
    """The message without the entries of the person with this NHS number.

    Drops every entry that carries the number and every entry that refers to a
    Patient entry that does.
    """
    if media == "xml":
        root = etree.fromstring(
            payload, parser=etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        )
        entries = [(e, etree.tostring(e).decode()) for e in root.findall(f"{{{FHIR_NS}}}entry")]
    else:
        document = fhirjson.loads(payload.decode("utf-8-sig"))
        entries = [(e, fhirjson.dumps(e)) for e in document.get("entry", [])]
    names: set[str] = set()
    for _, text in entries:
        if nhs_number in text and "Patient" in text:
            names |= set(
                re.findall(r'(urn:uuid:[0-9a-fA-F-]{36}|Patient/[A-Za-z0-9.\-]{1,64})"', text)
            )
    drop = [e for e, text in entries if nhs_number in text or any(n in text for n in names)]
    if media == "xml":
        for element in drop:
            root.remove(element)
        return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    document["entry"] = [e for e in document["entry"] if not any(e is d for d in drop)]
    return fhirjson.dumps(document).encode()


def redact_person_ndjson(payload: bytes, nhs_number: str) -> bytes:
    """An NDJSON upload with the person's lines blanked, so other lines keep their numbers.

    Blanks every line that carries the number and every line that refers to a
    Patient line that does (`Patient/<id>`). A line that cannot be read is kept
    unless it carries the number (the worker then reports it by line number).
    """
    lines = payload.split(b"\n")
    number = nhs_number.encode()
    names: set[bytes] = set()
    for line in lines:
        if number not in line:
            continue
        try:
            resource = json.loads(line.decode("utf-8-sig"))
        except ValueError:
            continue
        if isinstance(resource, dict) and resource.get("resourceType") == "Patient":
            names.add(f'"Patient/{resource.get("id")}"'.encode())
    return b"\n".join(
        b"" if number in line or any(name in line for name in names) else line for line in lines
    )
