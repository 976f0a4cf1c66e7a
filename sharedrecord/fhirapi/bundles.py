"""What the FHIR read API writes: searchset Bundles, streamed, and OperationOutcomes.

A page's entries arrive as Bundle entry JSON text (fhir_entries.Page, made by
PostgreSQL) and are streamed as they are; nothing here parses a stored resource.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone

from audit.outcomes import FHIR_JSON, operation_outcome, outcome_issue
from sharedrecord import fhirjson
from sharedrecord.fhir_entries import Page
from sharedrecord.fhir_read import patient_resource
from sharedrecord.live import LivePull
from sharedrecord.models import Patient


def json_response(body: dict[str, Any], status: int = 200) -> HttpResponse:
    """A FHIR JSON response with this body (a resource's decimals as sent: fhirjson)."""
    return HttpResponse(fhirjson.dumps(body), status=status, content_type=FHIR_JSON)


def instant(value: datetime.datetime) -> str:
    """A datetime as a FHIR instant in UTC ("...Z")."""
    return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def link(base: str, path: str, params: list[tuple[str, str]]) -> str:
    """An absolute URL of the read API with these query parameters."""
    return f"{base}/{path}" + (f"?{urlencode(params)}" if params else "")


def bundle(
    *, total: int | None, links: list[tuple[str, str]], entries: list[str]
) -> StreamingHttpResponse:
    """A searchset Bundle, streamed: its head, then the entries (already JSON text) as given.

    A total of None (the client asked _total=none) leaves Bundle.total out.
    """
    head: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": instant(timezone.now())},
        "type": "searchset",
    }
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": relation, "url": url} for relation, url in links]

    def chunks() -> Iterator[str]:
        text = json.dumps(head)
        if not entries:
            yield text
            return
        yield text[:-1] + ',"entry":['
        for i, entry in enumerate(entries):
            yield ("," if i else "") + entry
        yield "]}"

    return StreamingHttpResponse(chunks(), content_type=FHIR_JSON)


def patient_entry(base: str, patient: Patient) -> str:
    """The person as a match of a search (or the first entry of $everything)."""
    return json.dumps(
        {
            "fullUrl": f"{base}/Patient/{patient.public_id}",
            "resource": patient_resource(patient),
            "search": {"mode": "match"},
        }
    )


def _warning_entry(code: str, text: str) -> str:
    """A searchset entry (mode "outcome") holding one warning issue."""
    issue = outcome_issue(severity="warning", code=code, text=text)
    return json.dumps({"resource": operation_outcome([issue]), "search": {"mode": "outcome"}})


def too_many_entry() -> str:
    """The warning a patient search gives when more people match than it may show."""
    return _warning_entry(
        "too-costly",
        "More people match than can be shown: add gender or address-postalcode, "
        "or search by NHS number.",
    )


def _withheld_entry() -> str:
    return _warning_entry(
        "suppressed", "Some items were withheld under the sharing agreement's sensitivity rules."
    )


def page_response(
    base: str, path: str, params: list[tuple[str, str]], page: Page
) -> StreamingHttpResponse:
    """One page of entries as a Bundle, with a next link carrying the cursor if more follow."""
    entries = [text for text in (page.entries, page.provenance) if text]
    if page.withheld:
        entries.append(_withheld_entry())
    kept = [(k, v) for k, v in params if k != "_cursor"]
    links = [("self", link(base, path, params))]
    if page.next_cursor is not None:
        links.append(("next", link(base, path, [*kept, ("_cursor", page.next_cursor.token())])))
    return bundle(total=page.total, links=links, entries=entries)


def prepend(chunks: Iterator[bytes], entry: str) -> Iterator[bytes]:
    """Put one more entry at the start of a streamed Bundle's entry array."""
    head = next(chunks).decode()
    if head.endswith('"entry":['):
        yield (head + entry + ",").encode()
    else:
        yield (head[:-1] + ',"entry":[' + entry + "]}").encode()
    yield from chunks


LIVE_TAG_SYSTEM = "https://fhir.sharedrecord.example/CodeSystem/retrieval"


def live_entries(live: LivePull, types: frozenset[str]) -> list[str]:
    """What the pull sources answered live, as $everything entries (issue 25).

    Each resource keeps its source's id; meta.source names the source's
    base URL and a meta.tag says when it was retrieved live (nothing of it is
    stored here). A source that did not answer is named in an outcome entry.
    """
    entries: list[str] = []
    for answer in live.answers:
        if not answer.answered:
            entries.append(
                _warning_entry(
                    "incomplete",
                    f"{answer.source_name} system did not answer; its information is not shown.",
                )
            )
            continue
        at = answer.retrieved_at.astimezone(timezone.get_current_timezone())
        for item in answer.items:
            if item.resource_type not in types:
                continue
            meta = dict(item.resource.get("meta") or {})
            meta["source"] = answer.base_url
            meta["tag"] = [
                *[t for t in meta.get("tag", []) if isinstance(t, dict)],
                {
                    "system": LIVE_TAG_SYSTEM,
                    "code": "retrieved-live",
                    "display": f"retrieved live at {at:%H:%M} from {answer.source_name}",
                },
            ]
            resource = {**item.resource, "meta": meta}
            full_url = f"{answer.base_url.rstrip('/')}/{item.resource_type}/{item.source_id}"
            entries.append(
                fhirjson.dumps(
                    {"fullUrl": full_url, "resource": resource, "search": {"mode": "include"}}
                )
            )
    if live.withheld:
        entries.append(_withheld_entry())
    return entries
