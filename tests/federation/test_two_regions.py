"""Two deployments of the platform on one machine: region B pulls from region A live (issue 25).

Region A runs as its own processes (tests/federation/conftest.py); region B
is this test process, serving pages on its live_server. B's clinician opens a
person; B asks A through A's real OAuth2 token endpoint and FHIR read API.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from django.db import connection
from django.test import Client

from audit.models import AuditAction, AuditEvent
from ingestion.pulling import pull_tokens_forget
from sharedrecord.models import Entry, Organisation, Patient, User
from sharedrecord.pullsources import pull_source_register
from tests.factories import confirm_basis, make_patient
from tests.federation.conftest import A_PRACTICE, B_HOSPITAL, People, RegionA
from tests.pullsource import PullSourceServer, SourceState, person_resource

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
SECRET = "REGION_A_PULL_SECRET"
SLOW_SECRET = "SLOW_SOURCE_SECRET"
CLAIM = "Attending our emergency department now; I am the treating doctor"


@pytest.fixture
def region_b(
    region_a: tuple[RegionA, People], transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[RegionA, People, User]]:
    """Region B's configuration: region A as a pull source, and B's own clinician."""
    region, people = region_a
    monkeypatch.setenv(SECRET, region.client_secret)
    pull_tokens_forget()
    start = datetime.date(2025, 1, 1)
    region_a_org = Organisation.objects.create(
        ods_code="ZRA00", name="Region A shared care record", kind="other", dsa_start=start
    )
    pull_source_register(
        organisation=region_a_org, base_url=f"{region.base_url}/fhir/R4",
        token_url=f"{region.base_url}/o/token/", client_id=region.client_id, secret_name=SECRET,
        scope="system/*.read", timeout_seconds=Decimal(10),
    )  # fmt: skip
    hospital = Organisation.objects.create(
        ods_code=B_HOSPITAL, name="Region B General Hospital", kind="acute", dsa_start=start
    )
    clinician = User.objects.create_user(
        "dr.regionb", password="region-b-password-1", organisation=hospital,
        role="clinical-practitioner", first_name="Bea", last_name="Border",
    )  # fmt: skip
    yield region, people, clinician
    pull_tokens_forget()


def _session(live_server: Any, user: User, patient: Patient) -> requests.Session:
    """A browser session on region B with the basis recorded (the form, in-process)."""
    client = Client()
    client.force_login(user)
    assert confirm_basis(client, patient, CLAIM).status_code == 302
    session = requests.Session()
    session.cookies.set("sessionid", client.cookies["sessionid"].value)
    return session


def _snapshot() -> dict[str, str]:
    """Every row of every table of region B but the audit trail and sessions, as one digest each."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = sorted(
            t for (t,) in cursor.fetchall() if not t.startswith(("audit_", "django_session"))
        )
        digests = {}
        for table in tables:
            cursor.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{table}\" t"
            )
            count, digest = cursor.fetchone()
            digests[table] = f"{count}:{digest}"
    return digests


def test_region_b_pulls_from_region_a_live_and_stores_nothing(
    region_b: tuple[RegionA, People, User], live_server: Any
) -> None:
    region, people, clinician = region_b
    patient = make_patient(nhs_number=people.shared, registered_gp_ods=A_PRACTICE)
    session = _session(live_server, clinician, patient)
    before = _snapshot()
    response = session.get(f"{live_server.url}/record/{patient.public_id}/", timeout=60)
    assert response.status_code == 200
    page = response.text
    assert "Region A shared care record" in page
    assert "retrieved live at" in page
    assert "Allergy to penicillin" in page
    assert "did not answer" not in page
    # Region B stores nothing it was given: every table's rows are as they were.
    assert _snapshot() == before
    assert not Entry.objects.exists()
    # B's own audit: who asked, why, which source, what came back.
    [pull] = AuditEvent.objects.filter(action=AuditAction.LIVE_PULL, actor_id=clinician.public_id)
    assert pull.detail["source"] == "ZRA00"
    assert pull.detail["answer"] == "answered"
    assert pull.detail["shown"]
    # A's audit names B's user, role, organisation and purpose, through B's API client.
    rows = region.query(
        "SELECT actor_org_ods, detail FROM audit_event WHERE action = 'api-read' "
        "AND detail ? 'on_behalf_of' ORDER BY id"
    )
    assert rows, region.log_tail()
    everything = [d for _, d in rows if d.get("interaction") == "everything"]
    assert everything, rows
    assert {ods for ods, _ in rows} == {B_HOSPITAL}
    assert everything[-1]["on_behalf_of"] == {
        "user_id": str(clinician.public_id),
        "user": "Bea Border",
        "role": f"clinical-practitioner {clinician.rbac_code}".strip(),
        "organisation": B_HOSPITAL,
    }
    assert everything[-1]["purpose"] == "TREAT"


def test_opt_out_in_region_a_means_nothing_returned_and_nothing_shown(
    region_b: tuple[RegionA, People, User], live_server: Any
) -> None:
    region, people, clinician = region_b
    patient = make_patient(nhs_number=people.opted_out, registered_gp_ods=A_PRACTICE)
    session = _session(live_server, clinician, patient)
    page = session.get(f"{live_server.url}/record/{patient.public_id}/", timeout=60).text
    assert "Holds no record of this person." in page
    assert "Allergy to penicillin" not in page
    [pull] = AuditEvent.objects.filter(action=AuditAction.LIVE_PULL, actor_id=clinician.public_id)
    assert pull.detail["answer"] == "not-found"
    assert pull.detail["received"] == 0
    # Region A holds nothing for the person (its purge ran), so it had nothing to send.
    assert region.query(
        "SELECT count(*) FROM sharedrecord_patient WHERE nhs_number = %s", [people.opted_out]
    ) == [(0,)]


@pytest.mark.parametrize("trouble", ["slow", "failing"])
def test_a_slow_or_failing_source_is_named_beside_region_a(
    region_b: tuple[RegionA, People, User], live_server: Any, monkeypatch: pytest.MonkeyPatch,
    trouble: str,
) -> None:  # fmt: skip
    _region, people, clinician = region_b
    patient = make_patient(nhs_number=people.shared, registered_gp_ods=A_PRACTICE)
    monkeypatch.setenv(SLOW_SECRET, "pull-secret-123")
    state = SourceState(delay=5.0 if trouble == "slow" else 0.0, fail=trouble == "failing")
    state.people[patient.nhs_number] = person_resource(patient.nhs_number)
    with PullSourceServer(state) as source:
        pull_source_register(
            organisation=Organisation.objects.create(
                ods_code="ZSL01", name="Slowbrook Community Trust", kind="community",
                dsa_start=datetime.date(2025, 1, 1),
            ),
            base_url=source.fhir, token_url=source.token_url, client_id="pull-client",
            secret_name=SLOW_SECRET, timeout_seconds=Decimal(1),
        )  # fmt: skip
        session = _session(live_server, clinician, patient)
        page = session.get(f"{live_server.url}/record/{patient.public_id}/", timeout=60).text
    assert "Slowbrook Community Trust system did not answer" in page
    assert "its information is not shown" in page
    assert "Allergy to penicillin" in page  # region A still answered
    answers = {
        e.detail["source"]: e.detail["answer"]
        for e in AuditEvent.objects.filter(
            action=AuditAction.LIVE_PULL, actor_id=clinician.public_id
        )
    }
    assert answers == {"ZRA00": "answered", "ZSL01": "timeout" if trouble == "slow" else "error"}
