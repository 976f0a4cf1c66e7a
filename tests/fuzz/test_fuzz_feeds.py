"""Hostile feed messages over real HTTP to a real worker: no 5xx, nothing left unfinished.

hypothesis mutates well-formed messages (a GP summary Bundle as JSON, a UK Core example
as XML, an HL7 v2 admission): values swapped for odd types and strings, elements dropped,
characters inserted, segments and fields broken. Every answer must be a 4xx in the
protocol's shape or an acceptance, and every accepted message must end processed (done,
or rejected with a reason) by the real Celery worker: nothing may be accepted that the
worker then fails on, and no receipt may stay unfinished.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from ingestion.models import FeedMessage, MessageStatus
from sharedrecord.models import Organisation
from tests.factories import EXTERNAL, gp_bundle, hl7_message, make_credential, next_nhs_number
from tests.fuzz.conftest import summary_record
from tests.services import CeleryWorker

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db(transaction=True)]

ODD_VALUES: list[Any] = [
    None, "", " ", "x" * 5000, "\u0000", "a\u0001b", "\ud800", "😀", "<script>alert(1)</script>",
    "2020-13-45", "9999-12-31T23:59:59Z", "Patient/../../x", "urn:uuid:not-a-uuid", 10**30,
    -1, 0.1, 1e308, True, [], {}, [[[[[]]]]], {"a": {"b": {"c": []}}}, "Ω" * 70,
]  # fmt: skip
FINAL = {MessageStatus.DONE, MessageStatus.REJECTED}


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += _paths(child, (*path, i))
    return found


def _mutate(document: Any, path: tuple[Any, ...], replacement: Any, drop: bool) -> None:
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    if drop and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement


def _in_shape(path: str, text: str) -> bool:
    """A FHIR feed's error is an OperationOutcome; an HL7 feed's, an ACK."""
    if path.endswith("hl7v2"):
        return text.startswith("MSH|") and "\rMSA|" in text
    try:
        return bool(json.loads(text).get("resourceType") == "OperationOutcome")
    except ValueError:
        return False


class Sender:
    """POSTs over real HTTP and counts what came back."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url, self.token = base_url, token
        self.sent = 0
        self.server_errors: list[tuple[str, int, str]] = []
        self.shape_errors: list[tuple[str, int, str]] = []
        self.accepted = 0

    def post(self, path: str, body: bytes, content_type: str) -> int:
        request = urllib.request.Request(
            self.base_url + path, data=body, method="POST",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type},
        )  # fmt: skip
        self.sent += 1
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status = int(response.status)
                text = response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            status, text = int(error.code), error.read().decode("utf-8", "replace")
        if status >= 500:
            self.server_errors.append((path, status, text[:200]))
        elif status >= 400 and not _in_shape(path, text):
            self.shape_errors.append((path, status, text[:200]))
        elif status == 202 or "MSA|AA" in text or "MSA|AE" in text:
            self.accepted += 1
        return status


@pytest.fixture
def sender(live_server: Any, celery_worker: CeleryWorker) -> Sender:
    organisation = Organisation.objects.create(
        ods_code="ZFZ01", name="Fuzz General", kind="acute", dsa_start="2025-01-01"
    )
    _, token = make_credential(organisation)
    return Sender(live_server.url, token)


def _wait_for_the_worker(seconds: float = 120) -> list[FeedMessage]:
    """Every stored message in a final state, or the ones that are not after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        open_ = list(FeedMessage.objects.exclude(status__in=FINAL))
        if not open_ or time.monotonic() > deadline:
            return open_
        time.sleep(0.5)


def _xml_sample() -> bytes:
    """A small XML Bundle of UK Core examples (a Patient and an Observation), as a sender would."""
    ns = "http://hl7.org/fhir"
    valid = EXTERNAL / "ukcore-r4-examples" / "valid"
    bundle = etree.Element(f"{{{ns}}}Bundle", nsmap={None: ns})
    etree.SubElement(bundle, f"{{{ns}}}id", value="fuzz-xml")
    etree.SubElement(bundle, f"{{{ns}}}type", value="collection")
    for pattern in ("UKCore-Patient-RichardSmith-Example.xml", "UKCore-Observation-*.xml"):
        for path in sorted(valid.glob(pattern))[:1]:
            resource = etree.fromstring(path.read_bytes())
            entry = etree.SubElement(bundle, f"{{{ns}}}entry")
            etree.SubElement(entry, f"{{{ns}}}resource").append(resource)
    return bytes(etree.tostring(bundle, xml_declaration=True, encoding="UTF-8"))


XML_SAMPLE = _xml_sample()
SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip


def test_hostile_feed_messages_get_4xx_or_are_processed_to_the_end(sender: Sender) -> None:
    started = time.monotonic()
    base = gp_bundle(next_nhs_number())
    paths = _paths(base)

    @SETTINGS
    @given(
        st.lists(
            st.tuples(st.sampled_from(paths), st.sampled_from(ODD_VALUES), st.booleans()),
            min_size=1, max_size=3,
        )
    )  # fmt: skip
    def json_bundles(mutations: list[tuple[tuple[Any, ...], Any, bool]]) -> None:
        bundle = copy.deepcopy(base)
        bundle["id"] = f"fuzz-{sender.sent}"
        for path, value, drop in mutations:
            try:
                _mutate(bundle, path, value, drop)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed this path
        body = json.dumps(bundle, ensure_ascii=False).encode("utf-8", "surrogatepass")
        sender.post("/api/v1/feeds/fhir", body, "application/fhir+json")

    @SETTINGS
    @given(st.integers(0, max(len(XML_SAMPLE) - 1, 0)), st.binary(min_size=0, max_size=12))
    def xml_bundles(position: int, inserted: bytes) -> None:
        body = XML_SAMPLE[:position] + inserted + XML_SAMPLE[position:]
        sender.post("/api/v1/feeds/fhir", body, "application/fhir+xml")

    segments = hl7_message(next_nhs_number(), control_id="FZ0").split("\r")

    @SETTINGS
    @given(
        st.integers(0, len(segments) - 2),
        st.integers(0, 30),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(["|", "^~\\&", "\\X00\\", ""]),
    )  # fmt: skip
    def hl7_messages(segment: int, field: int, value: str) -> None:
        broken = list(segments)
        fields = broken[segment].split("|")
        while len(fields) <= field:
            fields.append("")
        fields[field] = value
        broken[segment] = "|".join(fields)
        if segment > 0:  # a fresh control id for each, so none is a redelivery
            head = broken[0].split("|")
            head[9] = f"FZ{sender.sent}"
            broken[0] = "|".join(head)
        sender.post(
            "/api/v1/feeds/hl7v2", "\r".join(broken).encode("utf-8", "surrogatepass"),
            "x-application/hl7-v2+er7",
        )  # fmt: skip

    json_bundles()
    xml_bundles()
    hl7_messages()
    unfinished = _wait_for_the_worker()
    failed = [m for m in unfinished if m.status == MessageStatus.FAILED]
    summary_record(
        "feeds",
        {
            "inputs": sender.sent,
            "accepted": sender.accepted,
            "server_errors": len(sender.server_errors),
            "shape_errors": len(sender.shape_errors),
            "unfinished": len(unfinished),
            "failed_in_worker": len(failed),
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    assert sender.server_errors == []
    assert sender.shape_errors == []
    assert [(str(m.public_id), m.status, m.failure) for m in unfinished] == []
    assert sender.accepted > 0  # the mutations leave some messages whole enough to take
