"""The FHIR read API: the record pages' policy, scopes, paging, errors and audit."""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from fhir.resources.R4B import get_fhir_model_class

from audit.models import AuditEvent
from ingestion.demo import PEOPLE, acute_attendance
from sharedrecord import demo
from sharedrecord.models import CLINICAL_ROLES, Entry, Patient, RecordSection, User
from sharedrecord.organisations import organisation_upsert, staff_user_upsert
from tests.factories import confirm_basis, feed, make_credential, partner, shown_entries
from tests.fhirapi import body, entry_ids, fhir_get, partner_token, staff_token
from tests.urlwalk import walk

pytestmark = pytest.mark.django_db

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def one(entries) -> Entry:
    entry: Entry | None = entries.order_by("id").first()
    assert entry is not None
    return entry


def parse_all(bundle: dict) -> None:
    """Every resource the API returns parses with fhir.resources (R4B, the package's R4)."""
    get_fhir_model_class("Bundle").model_validate(bundle)
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def everything_ids(client: Client, token: str, patient, **headers) -> set[str]:
    response = fhir_get(
        client, token, f"Patient/{patient.public_id}/$everything", {"_count": 1000}, **headers
    )
    assert response.status_code == 200, response.json_body
    parse_all(response.json_body)
    assert "next" not in {link["relation"] for link in response.json_body["link"]}
    return set(entry_ids(response.json_body)) - {str(patient.public_id)}


def demo_user(spec: demo.DemoUser) -> User:
    for org in demo.ORGANISATIONS:
        if org.ods_code == spec.ods_code:
            organisation = organisation_upsert(
                ods_code=org.ods_code, name=org.name, kind=org.kind, dsa_start=demo.AGREEMENT_START
            )
    return staff_user_upsert(
        username=spec.username, organisation=organisation, role=spec.role,
        first_name=spec.first_name, last_name=spec.last_name, password=None,
    )  # fmt: skip


CLINICAL_DEMO_USERS = [spec for spec in demo.USERS if spec.role in CLINICAL_ROLES]


# Every demo role through the whole demo borough, pages and API side by side: about
# 7 s a role on the 2-core machine, so it runs in the slow step.
@pytest.mark.slow
@pytest.mark.parametrize("spec", CLINICAL_DEMO_USERS, ids=lambda s: s.username)
def test_the_api_shows_each_demo_role_exactly_what_the_record_pages_show(
    client: Client, spec: demo.DemoUser, record: Patient
) -> None:
    user = demo_user(spec)
    patient = record
    client.force_login(user)
    assert (
        confirm_basis(client, patient, claim="I am caring for this person today").status_code == 302
    )
    on_pages: set[str] = set()
    for section in RecordSection.values:
        page = client.get(f"/record/{patient.public_id}/{section}")
        assert page.status_code in (200, 403), (section, page.status_code)
        on_pages |= shown_entries(page) if page.status_code == 200 else set()
    client.logout()
    token = staff_token(client, user)
    assert everything_ids(client, token, patient) == on_pages
    assert on_pages  # every clinical role sees at least the person's demographics


def test_paging_everything_has_no_duplicates_or_gaps_while_a_feed_arrives(
    client: Client, registered_gp, record: Patient
) -> None:
    patient = record
    token = staff_token(client, registered_gp)
    before = everything_ids(client, token, patient)
    path = f"Patient/{patient.public_id}/$everything"
    first = fhir_get(client, token, path, {"_count": 4}).json_body
    seen = entry_ids(first)
    assert first["total"] == len(before)
    # A new feed arrives mid-paging: another A&E attendance for the same person.
    credential, _ = make_credential(partner("ZAC01"))
    again = dataclasses.replace(PEOPLE[0], key="rec2", nhs_number_sent=patient.nhs_number)
    assert feed(credential, acute_attendance(again)).status == "done"
    after_feed = everything_ids(client, token, patient)
    assert after_feed > before
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    while next_url:
        response = client.get(
            next_url.replace("http://testserver", ""),
            HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_X_PURPOSE_OF_USE="TREAT",
        )  # fmt: skip
        page = json.loads(body(response))
        assert page["total"] == len(before)
        seen += entry_ids(page)
        next_url = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), "")
    seen.remove(str(patient.public_id))
    assert len(seen) == len(set(seen))
    assert set(seen) == before
    # What arrived while paging is in the next _since read.
    since = fhir_get(client, token, path, {"_since": first["meta"]["lastUpdated"]}).json_body
    assert set(entry_ids(since)) - {str(patient.public_id)} >= after_feed - before


def test_a_total_is_counted_unless_the_client_asks_for_none(
    client: Client, registered_gp, record: Patient
) -> None:
    token = staff_token(client, registered_gp)
    path = f"Patient/{record.public_id}/$everything"
    everything = everything_ids(client, token, record)
    whole = fhir_get(client, token, path, {"_count": 1000}).json_body
    assert whole["total"] == len(everything)  # one page: it counts itself
    seen: list[str] = []
    page = fhir_get(client, token, path, {"_count": 4, "_total": "none"}).json_body
    while True:
        assert "total" not in page
        seen += entry_ids(page)
        next_url = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), "")
        if not next_url:
            break
        page = fhir_get(client, token, next_url.split("/fhir/R4/", 1)[1]).json_body
    seen.remove(str(record.public_id))
    assert sorted(seen) == sorted(everything)
    for params in ({"_total": "estimate"}, {"_total": "accurate"}):
        counted = fhir_get(client, token, path, {"_count": 4, **params}).json_body
        assert counted["total"] == len(everything)
    refused = fhir_get(client, token, path, {"_total": "some"})
    assert refused.status_code == 400
    assert refused.json_body["issue"][0]["expression"] == ["http._total"]


def test_type_search_filters_and_provenance(client: Client, registered_gp, record: Patient) -> None:
    patient = record
    token = staff_token(client, registered_gp)
    pid = str(patient.public_id)

    def ids(resource_type: str, **params) -> set[str]:
        response = fhir_get(client, token, resource_type, {"patient": pid, **params})
        assert response.status_code == 200, response.json_body
        parse_all(response.json_body)
        return set(entry_ids(response.json_body))

    conditions = Entry.objects.filter(patient=patient, resource_type="Condition")
    diabetes = one(conditions.filter(code="44054006"))
    assert ids("Condition") == {str(e.public_id) for e in conditions}
    assert ids("Condition", code="http://snomed.info/sct|44054006") == {str(diabetes.public_id)}
    assert ids("Condition", code="44054006,38341003") == {
        str(e.public_id) for e in conditions.filter(code__in=["44054006", "38341003"])
    }
    assert ids("Condition", code="http://other.example|44054006") == set()
    observations = Entry.objects.filter(patient=patient, resource_type="Observation")
    lab = ids("Observation", category="laboratory")
    assert lab
    assert lab <= {str(e.public_id) for e in observations}
    assert ids("Observation", status="final") == {
        str(e.public_id) for e in observations.filter(status="final")
    }
    hba1c = one(observations.filter(code="1049301000000100"))
    assert hba1c.effective_at is not None
    day = hba1c.effective_at.date()
    assert str(hba1c.public_id) in ids("Observation", date=day.isoformat())
    assert str(hba1c.public_id) not in ids("Observation", date=f"gt{day.isoformat()}")
    assert str(hba1c.public_id) in ids("Observation", date=[f"ge{day.year}", f"le{day.year}"])
    assert ids("Observation", _lastUpdated=f"lt{datetime.date(2000, 1, 1)}") == set()
    withprov = fhir_get(
        client, token, "Condition", {"patient": pid, "_revinclude": "Provenance:target"}
    ).json_body
    parse_all(withprov)
    provenance = [e["resource"] for e in withprov["entry"] if e["search"]["mode"] == "include"]
    assert {p["target"][0]["reference"] for p in provenance} == {
        f"Condition/{e.public_id}" for e in conditions
    }
    sources = {
        e["resource"]["meta"]["source"] for e in withprov["entry"] if e["search"]["mode"] == "match"
    }
    assert sources == {
        f"https://directory.spineservices.nhs.uk/ORD/2-0-0/organisations/{e.source_org.ods_code}#{e.source_system}"
        for e in conditions.select_related("source_org")
    }


def test_a_read_returns_the_stored_resource_with_provenance(
    client: Client, registered_gp, record: Patient
) -> None:
    patient = record
    token = staff_token(client, registered_gp)
    entry = one(Entry.objects.filter(patient=patient, resource_type="Condition"))
    response = fhir_get(client, token, f"Condition/{entry.public_id}")
    assert response.status_code == 200
    resource = response.json_body
    get_fhir_model_class("Condition").model_validate(resource)
    assert resource["id"] == str(entry.public_id)
    assert resource["code"] == entry.resource["code"]
    assert resource["subject"]["reference"] == f"Patient/{patient.public_id}"
    assert resource["meta"]["source"].endswith(
        f"/{entry.source_org.ods_code}#{entry.source_system}"
    )
    person = fhir_get(client, token, f"Patient/{patient.public_id}").json_body
    get_fhir_model_class("Patient").model_validate(person)
    assert person["identifier"] == [{"system": NHS, "value": patient.nhs_number}]
    assert person["birthDate"] == str(patient.birth_date)


def test_patient_search_by_nhs_number_and_by_demographics(
    client: Client, treating_clinician, record: Patient
) -> None:
    patient = record
    token = staff_token(client, treating_clinician)
    by_number = fhir_get(client, token, "Patient", {"identifier": f"{NHS}|{patient.nhs_number}"})
    parse_all(by_number.json_body)
    assert entry_ids(by_number.json_body) == [str(patient.public_id)]
    assert patient.nhs_number not in json.dumps(by_number.json_body["link"])
    posted = client.post(
        "/fhir/R4/Patient/_search", urlencode({"identifier": f"{NHS}|{patient.nhs_number}"}),
        content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_X_PURPOSE_OF_USE="TREAT",
    )  # fmt: skip
    assert entry_ids(json.loads(body(posted))) == [str(patient.public_id)]
    by_name = fhir_get(client, token, "Patient", {
        "family": patient.family_name.upper(), "birthdate": str(patient.birth_date)
    }).json_body  # fmt: skip
    assert entry_ids(by_name) == [str(patient.public_id)]
    nobody = fhir_get(client, token, "Patient", {"identifier": f"{NHS}|9434765919"}).json_body
    assert nobody["total"] == 0
    assert "entry" not in nobody
    other_system = fhir_get(client, token, "Patient", {"identifier": f"urn:x|{patient.nhs_number}"})
    assert other_system.json_body["total"] == 0
    searches = AuditEvent.objects.filter(
        action="patient-search", actor_name=treating_clinician.username
    )
    assert searches.filter(patient_id=patient.public_id, detail__via="fhir-api").count() == 2
    by_demographics = searches.get(detail__by="demographics")
    assert by_demographics.detail["patients"] == [str(patient.public_id)]
    assert by_demographics.detail["client"].startswith("Ward app")


def test_sensitive_entries_are_withheld_with_a_warning_and_unlocked_by_emergency_access(
    client: Client,
    record: Patient,
) -> None:
    patient = record
    nurse = User.objects.create_user(
        "persona.nurse", organisation=partner("ZAC01"), role="nurse", password="x-password-123"
    )
    token = staff_token(client, nurse)
    restricted = Entry.objects.get(patient=patient, sensitivity__contains=["R"])
    path = f"Patient/{patient.public_id}/$everything"
    normal = fhir_get(client, token, path).json_body
    assert str(restricted.public_id) not in entry_ids(normal)
    warnings = [e["resource"] for e in normal["entry"] if e["search"]["mode"] == "outcome"]
    assert [w["issue"][0]["code"] for w in warnings] == ["suppressed"]
    assert restricted.code not in json.dumps(warnings)
    refused = fhir_get(client, token, path, HTTP_X_PURPOSE_OF_USE="ETREAT")
    assert refused.status_code == 400
    assert "X-Break-Glass-Reason" in refused.json_body["issue"][0]["diagnostics"]
    emergency = fhir_get(
        client, token, path, HTTP_X_PURPOSE_OF_USE="ETREAT", HTTP_X_BREAK_GLASS_REASON="OVRER",
        HTTP_X_BREAK_GLASS_JUSTIFICATION="Unconscious in resus, no history available",
    ).json_body  # fmt: skip
    assert str(restricted.public_id) in entry_ids(emergency)
    event = AuditEvent.objects.filter(action="api-read", actor_name=nurse.username).latest("id")
    assert event.purpose == "ETREAT"
    assert event.detail["needs_review"] is True
    assert event.detail["reason_code"] == "OVRER"
    assert str(restricted.public_id) in event.detail["entries"]
    # The entry's own read is withheld alike: a 404, as for an entry that does not exist.
    assert fhir_get(client, token, f"Condition/{restricted.public_id}").status_code == 404


def test_scopes_are_checked_before_any_query(
    client: Client, registered_gp, record: Patient
) -> None:
    patient = record
    token = staff_token(client, registered_gp, scope="user/Observation.read")
    only = fhir_get(client, token, f"Patient/{patient.public_id}/$everything").json_body
    types = {e["resource"]["resourceType"] for e in only["entry"] if e["search"]["mode"] == "match"}
    assert types == {"Observation"}
    events = AuditEvent.objects.count()
    for path, params in (("Patient", {"identifier": f"{NHS}|{patient.nhs_number}"}),
                         ("Condition", {"patient": str(patient.public_id)})):  # fmt: skip
        refused = fhir_get(client, token, path, params)
        assert refused.status_code == 403
        assert refused.json_body["issue"][0]["code"] == "forbidden"
    assert AuditEvent.objects.count() == events  # refused before any query or audit
    # (A staff application cannot even be given system/ scopes: test_oauth_lifecycle.py.)


def test_a_partner_system_reads_as_its_organisation_and_is_audited_as_itself(
    client: Client,
    record: Patient,
) -> None:
    patient = record
    hospital = partner("ZAC01")
    token = partner_token(client, hospital, name="Borough General EPR")
    found = fhir_get(client, token, "Patient", {"identifier": f"{NHS}|{patient.nhs_number}"})
    assert entry_ids(found.json_body) == [str(patient.public_id)]
    ids = everything_ids(client, token, patient)
    restricted = Entry.objects.get(patient=patient, sensitivity__contains=["R"])
    assert ids
    assert str(restricted.public_id) not in ids
    event = AuditEvent.objects.filter(action="api-read").latest("id")
    assert event.actor_type == "system"
    assert event.actor_name == "api:Borough General EPR"
    assert event.actor_org_ods == "ZAC01"
    assert set(event.detail["entries"]) == ids
    # The sharing agreement ends: the partner reads nothing more.
    hospital.dsa_end = hospital.dsa_start
    hospital.save()
    ended = fhir_get(client, token, f"Patient/{patient.public_id}/$everything")
    assert ended.status_code == 403
    assert ended.json_body["resourceType"] == "OperationOutcome"


def test_a_revoked_or_expired_token_or_a_closed_account_fails_at_once(
    client: Client, record: Patient
) -> None:
    # The token, its application and its account are one query, read afresh on
    # every request: nothing is kept that could outlive a revocation.
    from oauth2_provider.models import AccessToken

    from sharedrecord.oauth.consent import token_digest

    path = f"Patient/{record.public_id}/$everything"
    hospital = partner("ZAC01")
    for ends in ("revoked", "expired", "account closed"):
        token = partner_token(client, hospital, name=f"Borough EPR {ends}")
        assert fhir_get(client, token, path).status_code == 200
        access = AccessToken.objects.select_related("application__user").get(
            token_checksum=token_digest(token)
        )
        if ends == "revoked":
            access.revoke()
        elif ends == "expired":
            access.expires = access.expires - datetime.timedelta(days=1)
            access.save()
        else:
            account = access.application.user
            account.is_active = False
            account.save()
        events = AuditEvent.objects.filter(action="api-read").count()
        refused = fhir_get(client, token, path)
        assert refused.status_code == 401, ends
        assert AuditEvent.objects.filter(action="api-read").count() == events  # nothing read


def test_a_first_page_counts_and_flags_what_is_withheld_for_the_pages_after_it(
    client: Client, record: Patient
) -> None:
    # The first page asks what is withheld in its own statement; later pages carry
    # its answers (and its total).
    nurse = User.objects.create_user(
        "persona.nurse2", organisation=partner("ZAC01"), role="nurse", password="x-password-123"
    )
    token = staff_token(client, nurse)
    path = f"Patient/{record.public_id}/$everything"
    whole = everything_ids(client, token, record)
    page = fhir_get(client, token, path, {"_count": 2}).json_body
    pages, seen = 0, []
    while True:
        pages += 1
        assert page["total"] == len(whole)
        modes = [e["search"]["mode"] for e in page["entry"]]
        assert modes.count("outcome") == 1  # withheld, said on every page
        seen += [i for i in entry_ids(page) if i != str(record.public_id)]
        next_url = next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), "")
        if not next_url:
            break
        page = fhir_get(client, token, next_url.split("/fhir/R4/", 1)[1]).json_body
    assert pages > 2
    assert sorted(seen) == sorted(whole)
    only_total = fhir_get(client, token, path, {"_count": 0}).json_body
    assert only_total["total"] == len(whole)
    for kind in ("Observation", "Immunization"):  # some entries, perhaps none
        params = {"_type": kind}
        listed = fhir_get(client, token, path, {**params, "_count": 1000}).json_body
        counted = fhir_get(client, token, path, {**params, "_count": 0}).json_body
        assert counted["total"] == listed["total"] == len(entry_ids(listed))
        assert "entry" not in counted or not entry_ids(counted)


def test_nobody_learns_whether_a_person_or_entry_exists(
    client: Client, unrelated_clinician, record: Patient
) -> None:
    patient = record
    social = User.objects.create_user(
        "persona.sw2", organisation=partner("ZSC01"), role="social-worker", password="x-pass-1234"
    )
    token = staff_token(client, social)
    observation = one(Entry.objects.filter(patient=patient, resource_type="Observation"))
    missing = "00000000-0000-0000-0000-000000000001"
    # A social worker's role has no results: the entry answers like one that does not exist.
    for path in (f"Observation/{observation.public_id}", f"Observation/{missing}",
                 f"Patient/{missing}", f"Patient/{missing}/$everything", "Patient/not-a-uuid"):  # fmt: skip
        response = fhir_get(client, token, path)
        assert response.status_code == 404, path
        assert response.json_body["issue"][0]["code"] == "not-found"
    empty = fhir_get(client, token, "Observation", {"patient": str(patient.public_id)}).json_body
    assert empty["total"] == 0
    nobody = fhir_get(client, token, "Observation", {"patient": missing}).json_body
    assert nobody["total"] == 0
    assert "entry" not in nobody
    denied = AuditEvent.objects.filter(action="access-denied", actor_name=social.username)
    assert denied.count() == 5


def test_errors_are_operation_outcomes_with_the_right_status(
    client: Client, registered_gp, record: Patient
) -> None:
    patient = record
    token = staff_token(client, registered_gp)
    pid = str(patient.public_id)
    anonymous = client.get(f"/fhir/R4/Patient/{pid}")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(anonymous.content)["issue"][0]["code"] == "login"
    wrong = client.get(f"/fhir/R4/Patient/{pid}", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert wrong.status_code == 401
    auth: Any = {"HTTP_AUTHORIZATION": f"Bearer {token}", "HTTP_X_PURPOSE_OF_USE": "TREAT"}
    for method in ("post", "put", "patch", "delete"):
        response = getattr(client, method)(f"/fhir/R4/Condition/{pid}", **auth)
        assert response.status_code == 405, method
        assert json.loads(response.content)["resourceType"] == "OperationOutcome"
    assert client.post("/fhir/R4/Condition", {}, **auth).status_code == 405
    assert fhir_get(client, token, f"Patient/{pid}", {"_format": "xml"}).status_code == 406
    assert (
        fhir_get(client, token, f"Patient/{pid}", HTTP_ACCEPT="application/fhir+xml").status_code
        == 406
    )
    posted_json = client.post(
        "/fhir/R4/Patient/_search", "{}", content_type="application/json", **auth
    )
    assert posted_json.status_code == 415
    lenient = fhir_get(client, token, "Condition", {"patient": pid, "_elements": "code"})
    assert lenient.status_code == 200
    strict = fhir_get(client, token, "Condition", {"patient": pid, "_elements": "code"},
                      HTTP_PREFER="handling=strict")  # fmt: skip
    assert strict.status_code == 400
    assert "_elements" in strict.json_body["issue"][0]["diagnostics"]
    for params in ({}, {"patient": pid, "date": "yesterday"}, {"patient": pid, "_count": "many"},
                   {"patient": pid, "_cursor": "forged"}):  # fmt: skip
        response = fhir_get(client, token, "Observation", params)
        assert response.status_code == 400, params
        assert response.json_body["issue"][0]["severity"] == "error"
    no_purpose = client.get(f"/fhir/R4/Patient/{pid}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert no_purpose.status_code == 400
    assert "X-Purpose-Of-Use" in json.loads(no_purpose.content)["issue"][0]["diagnostics"]
    assert fhir_get(client, token, "Basic", {"patient": pid}).status_code == 404
    assert fhir_get(client, token, "Patient").status_code == 400
    # A cursor from one search does not page another.
    first = fhir_get(client, token, "Observation", {"patient": pid, "_count": 1}).json_body
    cursor = next(lk["url"] for lk in first["link"] if lk["relation"] == "next").split("_cursor=")[
        1
    ]
    other = fhir_get(client, token, "Condition", {"patient": pid, "_cursor": cursor})
    assert other.status_code == 400


def test_metadata_tells_the_truth(client: Client) -> None:
    response = client.get("/fhir/R4/metadata")
    assert response.status_code == 200
    statement = json.loads(response.content)
    get_fhir_model_class("CapabilityStatement").model_validate(statement)
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {i["code"] for r in resources.values() for i in r["interaction"]} == {
        "read",
        "search-type",
    }
    assert resources["Patient"]["operation"][0]["name"] == "everything"
    assert len(resources) == 15
    smart = json.loads(client.get("/fhir/R4/.well-known/smart-configuration").content)
    assert smart["token_endpoint"].endswith("/o/token/")
    assert "system/*.read" in smart["scopes_supported"]


# Public by the FHIR and SMART standards, and holding no personal data.
PUBLIC_FHIR_ROUTES = {"metadata", "smart-configuration"}
# Partner systems' subscriptions (notifications): each needs a token (checked below);
# what they return and audit is tests/notifications/test_subscription_api.py's.
SUBSCRIPTION_ROUTES = {
    "topic-search": "SubscriptionTopic",
    "topic-read": "SubscriptionTopic/admission",
    "subscription-create": "Subscription",
    "subscription-read": f"Subscription/{uuid.uuid4()}",
    "subscription-status": f"Subscription/{uuid.uuid4()}/$status",
    "subscription-events": f"Subscription/{uuid.uuid4()}/$events",
}


def test_every_api_route_needs_a_token_and_audits_what_it_returns(
    client: Client, registered_gp, record: Patient
) -> None:
    patient = record
    token = staff_token(client, registered_gp)
    entry = one(Entry.objects.filter(patient=patient, resource_type="Observation"))
    pid = str(patient.public_id)
    # One real request per route name: (path, query or form).
    requests: dict[str, tuple[str, dict[str, str]]] = {
        "patient-search": ("Patient", {"identifier": f"{NHS}|{patient.nhs_number}"}),
        "patient-post-search": ("Patient/_search", {"identifier": f"{NHS}|{patient.nhs_number}"}),
        "patient-read": (f"Patient/{pid}", {}),
        "patient-everything": (f"Patient/{pid}/$everything", {}),
        "type-search": ("Observation", {"patient": pid}),
        "entry-read": (f"Observation/{entry.public_id}", {}),
    }
    routes = {r.name for r in walk() if r.path.startswith("/fhir/R4/")}
    assert routes == set(requests) | PUBLIC_FHIR_ROUTES | set(SUBSCRIPTION_ROUTES)
    for name, path in SUBSCRIPTION_ROUTES.items():
        assert client.get(f"/fhir/R4/{path}").status_code == 401, name
    for name, (path, params) in requests.items():
        call = _caller(client, path, params, post=name == "patient-post-search")
        assert call().status_code == 401, name
        before = AuditEvent.objects.count()
        response = call(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_X_PURPOSE_OF_USE="TREAT")
        assert response.status_code == 200, name
        parse_all_resources(json.loads(body(response)))
        written = AuditEvent.objects.count() - before
        events = list(AuditEvent.objects.order_by("-id")[:written])
        assert [e.detail.get("via") for e in events] == ["fhir-api"], name
        event = events[0]
        assert event.patient_id == patient.public_id or event.detail["patients"] == [pid], name


def _caller(client: Client, path: str, params: dict[str, str], *, post: bool) -> Any:
    def call(**headers: Any) -> Any:
        if post:
            return client.post(f"/fhir/R4/{path}", urlencode(params),
                               content_type="application/x-www-form-urlencoded", **headers)  # fmt: skip
        return client.get(f"/fhir/R4/{path}", params, **headers)

    return call


def parse_all_resources(resource: dict) -> None:
    if resource["resourceType"] == "Bundle":
        parse_all(resource)
    else:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_the_read_api_serves_every_type_the_record_stores() -> None:
    # A type stored but not readable would be on the pages and missing for every partner
    # (an advance decision, a Consent, was: $everything left it out).
    from ingestion.fhir.profile import SUPPORTED
    from sharedrecord.smart import READABLE_TYPES

    assert set(SUPPORTED) - READABLE_TYPES == set()
