"""A partner's standard FHIR client (fhirpy) against a live server: token, search, read, paging."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from fhirpy import SyncFHIRClient

from audit.models import AuditEvent
from sharedrecord.clients import api_client_register
from tests.factories import fed_person, partner

pytestmark = pytest.mark.django_db(transaction=True)

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def test_a_partner_finds_a_person_and_pages_through_their_whole_record(live_server) -> None:
    patient = fed_person()
    issued = api_client_register(
        name="Borough General EPR", grant="client-credentials", organisation=partner("ZAC01"),
        role="clinical-practitioner",
    )  # fmt: skip
    # The token, as any OAuth2 client gets one: client credentials at the token endpoint.
    answer = requests.post(
        f"{live_server.url}/o/token/",
        data={"grant_type": "client_credentials", "scope": "system/*.read"},
        auth=(issued.client_id, issued.client_secret),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    base = f"{live_server.url}/fhir/R4"
    client = SyncFHIRClient(
        base, authorization=f"Bearer {token}", extra_headers={"X-Purpose-Of-Use": "TREAT"}
    )

    found = client.resources("Patient").search(identifier=f"{NHS}|{patient.nhs_number}").fetch()
    assert [p["id"] for p in found] == [str(patient.public_id)]
    person = client.reference("Patient", str(patient.public_id)).to_resource()
    assert person["identifier"][0]["value"] == patient.nhs_number

    observations = client.resources("Observation").search(patient=str(patient.public_id))
    every = observations.limit(1).fetch_all()
    assert len(every) == observations.count()
    assert len(every) > 1

    # $everything, two at a time, following each next link to the end.
    ids: list[str] = []
    page = client.execute(f"Patient/{patient.public_id}/$everything", "get", params={"_count": 2})
    pages = 1
    total = page["total"]
    while True:
        ids += [e["resource"]["id"] for e in page["entry"] if e["search"]["mode"] == "match"]
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            break
        parts = urlsplit(following[0])
        path = parts.path.removeprefix(urlsplit(base).path + "/")
        page = client.execute(path, "get", params=dict(parse_qsl(parts.query)))
        pages += 1
    ids.remove(str(patient.public_id))
    assert len(ids) == len(set(ids)) == total
    assert pages == -(-total // 2)  # two entries a page (the person rides on the first)
    reads = AuditEvent.objects.filter(action="api-read", actor_name="api:Borough General EPR")
    everything = reads.filter(detail__interaction="everything")
    assert everything.count() == pages
    assert sorted(i for e in everything for i in e.detail["entries"]) == sorted(ids)
