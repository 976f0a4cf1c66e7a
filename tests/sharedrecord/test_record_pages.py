"""The record pages: basis first, role-scoped sections, sensitivity, sources; every view audited."""

from __future__ import annotations

import dataclasses
import datetime
import re
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from audit.models import AuditAction, AuditEvent
from ingestion.demo import PEOPLE, acute_attendance
from sharedrecord.access import access_basis_current
from sharedrecord.basis import access_basis_record
from sharedrecord.models import AccessBasis, BasisKind, Entry, Organisation, Patient, User
from sharedrecord.record import SECTION_PAGE_SIZE
from tests.factories import (
    banner_entries,
    confirm_basis,
    fed_person,
    feed,
    feed_long_results,
    main_html,
    make_credential,
    partner,
    shown_entries,
    signed_in,
)

pytestmark = pytest.mark.django_db
PERSONAS = ["registered_gp", "treating_clinician", "unrelated_clinician"]
CLAIM = "Admitted to ward 7 tonight; I am the admitting doctor"


def _events(user, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(actor_id=user.public_id, action=action).order_by("id"))


@pytest.mark.parametrize("persona", PERSONAS)
def test_the_record_asks_for_a_basis_before_any_clinical_data(
    client: Client, request: pytest.FixtureRequest, persona: str, record: Patient
) -> None:
    user = request.getfixturevalue(persona)
    response = signed_in(client, user).get(f"/record/{record.public_id}/")
    assert response.status_code == 302
    assert response["Location"] == f"/access/{record.public_id}/"
    page = client.get(response["Location"])
    assert "Before you view this record" in main_html(page)
    assert "penicillin" not in page.content.decode()
    assert _events(user, AuditAction.RECORD_VIEW) == []


def test_the_basis_page_shows_what_the_feeds_say_about_each_relationship(
    client: Client, registered_gp, treating_clinician, unrelated_clinician, record: Patient
) -> None:
    url = f"/access/{record.public_id}/"
    gp = main_html(signed_in(client, registered_gp).get(url))
    assert "The person is registered with your practice." in gp
    ae = main_html(signed_in(client, treating_clinician).get(url))
    assert "recorded an encounter" in ae
    mh = main_html(signed_in(client, unrelated_clinician).get(url))
    assert "shows no relationship" in mh
    assert "Describe your role in this person" in mh


@pytest.mark.parametrize("page", ["", "emergency"])
def test_showing_who_the_person_is_before_the_basis_is_audited(
    client: Client, treating_clinician, record: Patient, page: str
) -> None:
    response = signed_in(client, treating_clinician).get(f"/access/{record.public_id}/{page}")
    assert record.family_name.upper() in main_html(response)
    (event,) = _events(treating_clinician, AuditAction.IDENTITY_VIEW)
    assert (event.patient_id, event.nhs_number) == (record.public_id, record.nhs_number)
    assert event.detail == {"relationships": ["encounter"]}


def test_an_encounter_older_than_the_window_is_no_relationship(
    client: Client, treating_clinician, record: Patient, settings
) -> None:
    settings.RELATIONSHIP_DAYS = 10  # the demo A&E visit was 20 days ago
    page = main_html(signed_in(client, treating_clinician).get(f"/access/{record.public_id}/"))
    assert "shows no relationship" in page


def test_a_claimed_relationship_needs_words_and_is_flagged_for_review(
    client: Client, unrelated_clinician, record: Patient
) -> None:
    signed_in(client, unrelated_clinician)
    refused = confirm_basis(client, record, claim="")
    assert refused.status_code == 400
    assert "Describe your role in this person&#x27;s care" in main_html(refused)
    assert not AccessBasis.objects.filter(user=unrelated_clinician).exists()

    accepted = confirm_basis(client, record, claim=CLAIM)
    assert accepted.status_code == 302
    basis = AccessBasis.objects.get(user=unrelated_clinician)
    assert (basis.kind, basis.self_claimed, basis.reason_text) == (
        BasisKind.DIRECT_CARE, True, CLAIM,
    )  # fmt: skip
    (event,) = _events(unrelated_clinician, AuditAction.ACCESS_BASIS)
    assert event.patient_id == record.public_id
    assert event.detail["self_claimed"] is True
    assert event.detail["needs_review"] is True
    assert event.purpose == "TREAT"


def test_confirming_is_required(client: Client, registered_gp, record: Patient) -> None:
    signed_in(client, registered_gp)
    response = client.post(f"/access/{record.public_id}/", {})
    assert response.status_code == 400
    assert "Confirm that you are directly involved" in main_html(response)
    assert not AccessBasis.objects.exists()


@pytest.mark.parametrize("persona", PERSONAS)
def test_the_summary_shows_each_item_with_its_source_and_audits_exactly_what_it_showed(
    client: Client, request: pytest.FixtureRequest, persona: str, record: Patient
) -> None:
    user = request.getfixturevalue(persona)
    signed_in(client, user)
    confirm_basis(client, record, claim=CLAIM)
    response = client.get(f"/record/{record.public_id}/")
    assert response.status_code == 200
    page = main_html(response)
    for expected in (
        "Allergy to penicillin", "Metformin 500mg tablets", "Type 2 diabetes mellitus",
        "Lives alone", "District nurse service", "Home care package",
        "Riverside Medical Practice", "Borough General Hospital",
    ):  # fmt: skip
        assert expected in page, expected
    (event,) = _events(user, AuditAction.RECORD_VIEW)
    assert set(event.detail["entries"]) == shown_entries(response)
    assert len(event.detail["entries"]) >= 10
    assert event.patient_id == record.public_id
    assert event.nhs_number == record.nhs_number
    assert {"Z81001", "ZAC01", "ZSC01", "ZCM01"} <= set(event.source_ods)
    assert response["Cache-Control"].startswith("max-age=0")


def test_restricted_items_are_withheld_and_counted_for_roles_not_permitted(
    client: Client,
    registered_gp,
    treating_clinician,
    unrelated_clinician,
    mental_health_clinician,
    record: Patient,
) -> None:
    problems = f"/record/{record.public_id}/problems"
    signed_in(client, treating_clinician)
    confirm_basis(client, record)
    ae = client.get(problems)
    assert "Depressive disorder" not in ae.content.decode()
    assert "1 item withheld" in main_html(ae)
    (event,) = _events(treating_clinician, AuditAction.SECTION_VIEW)
    assert event.detail["withheld"] == 1
    assert set(event.detail["entries"]) == shown_entries(ae) | set(banner_entries(ae))

    signed_in(client, registered_gp)
    confirm_basis(client, record)
    gp = main_html(client.get(problems))
    assert "Depressive disorder" in gp
    assert "Sensitive" in gp
    assert "withheld" not in gp

    # The mental health trust sent it: its own staff always see it.
    signed_in(client, mental_health_clinician)
    confirm_basis(client, record)
    assert "Depressive disorder" in main_html(client.get(problems))

    # A clinician of another trust with no relationship sees it withheld.
    signed_in(client, unrelated_clinician)
    confirm_basis(client, record, claim=CLAIM)
    assert "Depressive disorder" not in main_html(client.get(problems))


def test_break_glass_needs_a_coded_reason_and_words(
    client: Client, treating_clinician, record: Patient
) -> None:
    signed_in(client, treating_clinician)
    url = f"/access/{record.public_id}/emergency"
    refused = client.post(url, {"reason_code": "NOPE", "reason_text": "x"})
    assert refused.status_code == 400
    page = main_html(refused)
    assert "Choose why consent cannot be obtained" in page
    assert "Explain why you need emergency access" in page
    assert not AccessBasis.objects.exists()


def test_break_glass_unlocks_restricted_items_for_four_hours_and_is_flagged(
    client: Client, treating_clinician, record: Patient
) -> None:
    signed_in(client, treating_clinician)
    response = client.post(
        f"/access/{record.public_id}/emergency",
        {"reason_code": "OVRER", "reason_text": "Unconscious in resus, no family present"},
    )
    assert response.status_code == 302
    basis = AccessBasis.objects.get(user=treating_clinician)
    assert basis.kind == BasisKind.BREAK_GLASS
    assert basis.expires_at - basis.created_at == datetime.timedelta(hours=4)
    (glass,) = _events(treating_clinician, AuditAction.BREAK_GLASS)
    assert (glass.purpose, glass.detail["reason_code"], glass.detail["needs_review"]) == (
        "ETREAT", "OVRER", True,
    )  # fmt: skip
    assert glass.detail["reason_text"] == "Unconscious in resus, no family present"

    page = main_html(client.get(f"/record/{record.public_id}/problems"))
    assert "Emergency access" in page
    assert "Depressive disorder" in page
    assert "Sensitive" in page
    (view,) = _events(treating_clinician, AuditAction.SECTION_VIEW)
    assert view.purpose == "ETREAT"
    assert view.detail["break_glass"] is True


def test_emergency_access_stays_the_basis_while_it_lasts_whatever_is_recorded_after(
    treating_clinician, record: Patient
) -> None:
    session = "a-session-key"

    def current(key: str = session) -> AccessBasis | None:
        return access_basis_current(viewer=treating_clinician, patient=record, session_key=key)

    def recorded(kind: BasisKind, *, claimed: str = "", reason_text: str = "") -> AccessBasis:
        return access_basis_record(
            viewer=treating_clinician, patient_id=str(record.public_id), session_key=session,
            kind=kind, claimed_relationship=claimed, reason_text=reason_text,
            reason_code="OVRER" if reason_text else "",
        )  # fmt: skip

    assert current() is None
    first = recorded(BasisKind.DIRECT_CARE, claimed="Seen in the emergency department")
    assert current() == first
    glass = recorded(BasisKind.BREAK_GLASS, reason_text="Unconscious in resus, no family")
    latest = recorded(BasisKind.DIRECT_CARE, claimed="Seen in the department again")
    assert current() == glass
    again = recorded(BasisKind.BREAK_GLASS, reason_text="Still unconscious, no family here")
    assert current() == again  # the newest emergency access
    AccessBasis.objects.filter(pk=again.pk).update(expires_at=timezone.now())
    assert current() == glass
    AccessBasis.objects.filter(pk=glass.pk).update(expires_at=timezone.now())
    assert current() == latest  # the newest of the rest
    assert current("another-session") is None


def test_break_glass_never_unlocks_very_restricted_items(
    client: Client, treating_clinician, record: Patient
) -> None:
    from sharedrecord.models import Entry

    Entry.objects.filter(patient=record, code="35489007").update(sensitivity=["V"])
    signed_in(client, treating_clinician)
    client.post(
        f"/access/{record.public_id}/emergency",
        {"reason_code": "OVRPJ", "reason_text": "Collapsed, cannot consent to anything"},
    )
    page = main_html(client.get(f"/record/{record.public_id}/problems"))
    assert "Depressive disorder" not in page
    assert "1 item withheld" in page


def test_a_social_worker_sees_care_not_results_and_a_denied_section_is_audited(
    client: Client, social_worker, record: Patient
) -> None:
    signed_in(client, social_worker)
    # The council's own active care package and alert are a relationship the feeds show:
    # nothing to self-declare, nothing flagged for review.
    assert confirm_basis(client, record).status_code == 302
    basis = AccessBasis.objects.get(user=social_worker)
    assert not basis.self_claimed
    assert {"care-plan", "alert"} <= set(basis.relationships)
    page = main_html(client.get(f"/record/{record.public_id}/"))
    assert "Home care package" in page
    assert "Lives alone" in page
    assert "HbA1c" not in page
    assert "Recent results" not in page
    assert "Test results" in page  # named as not part of the role
    denied = client.get(f"/record/{record.public_id}/results")
    assert denied.status_code == 403
    assert "HbA1c" not in denied.content.decode()
    (event,) = _events(social_worker, AuditAction.ACCESS_DENIED)
    assert (event.detail["section"], event.patient_id) == ("results", record.public_id)


def test_results_show_ranges_abnormal_flags_and_a_trend(
    client: Client, registered_gp, record: Patient
) -> None:
    signed_in(client, registered_gp)
    confirm_basis(client, record)
    page = main_html(client.get(f"/record/{record.public_id}/results"))
    assert page.count("HbA1c level (IFCC standardised)") >= 3
    assert "Reference range" in page
    assert "20 mmol/mol to 48 mmol/mol" in page
    assert "Outside range" in page
    assert "<svg" in page
    assert "Trend of HbA1c level (IFCC standardised): 58" in page
    assert "Serum troponin" in page  # one value: listed, not charted
    assert "Trend of Serum troponin" not in page


def test_a_discharge_letter_opens_and_the_opening_is_audited(
    client: Client, treating_clinician, social_worker, record: Patient
) -> None:
    signed_in(client, treating_clinician)
    confirm_basis(client, record)
    documents = client.get(f"/record/{record.public_id}/documents")
    (entry_id,) = shown_entries(documents)
    letter = client.get(f"/record/{record.public_id}/documents/{entry_id}")
    assert "Troponin normal. Discharged home with GP follow-up." in main_html(letter)
    (event,) = _events(treating_clinician, AuditAction.DOCUMENT_VIEW)
    # The letter, then the alerts the banner names (each shown, so each audited).
    assert event.detail["entries"] == [entry_id, *banner_entries(letter)]

    signed_in(client, social_worker)
    confirm_basis(client, record, claim="Allocated social worker for the care package")
    hidden = client.get(f"/record/{record.public_id}/documents/{entry_id}")
    assert hidden.status_code == 404
    assert "Troponin" not in hidden.content.decode()


def test_a_basis_lasts_only_for_the_session_and_its_window(
    client: Client, registered_gp, record: Patient
) -> None:
    signed_in(client, registered_gp)
    confirm_basis(client, record)
    assert client.get(f"/record/{record.public_id}/").status_code == 200
    AccessBasis.objects.update(
        created_at=timezone.now() - datetime.timedelta(hours=13),
        expires_at=timezone.now() - datetime.timedelta(seconds=1),
    )
    assert client.get(f"/record/{record.public_id}/").status_code == 302
    confirm_basis(client, record)
    assert client.get(f"/record/{record.public_id}/").status_code == 200

    other = Client()
    signed_in(other, registered_gp)  # a new sign-in is a new session: asked again
    assert other.get(f"/record/{record.public_id}/").status_code == 302


def test_an_unknown_person_and_an_unknown_section_say_no_record_and_are_audited(
    client: Client, registered_gp, record: Patient
) -> None:
    signed_in(client, registered_gp)
    missing = uuid.uuid4()
    response = client.get(f"/record/{missing}/")
    assert response.status_code == 404
    assert "No shared care record is available for this person" in main_html(response)
    (event,) = _events(registered_gp, AuditAction.ACCESS_DENIED)
    assert event.detail == {"asked": "record", "patient": str(missing), "reason": "not-found"}
    assert client.get(f"/record/{record.public_id}/nonsense").status_code == 404


def test_only_data_from_organisations_with_an_active_agreement_is_shown(
    client: Client, registered_gp, record: Patient
) -> None:
    Organisation.objects.filter(ods_code="ZCM01").update(
        dsa_end=timezone.localdate() - datetime.timedelta(days=1)
    )
    signed_in(client, registered_gp)
    confirm_basis(client, record)
    page = main_html(client.get(f"/record/{record.public_id}/"))
    assert "Home care package" in page
    assert "District nurse service" not in page
    assert "leg ulcer" not in page


def test_no_known_allergies_is_not_the_same_as_nothing_recorded(
    client: Client, registered_gp, record: Patient
) -> None:
    from sharedrecord.models import Entry

    signed_in(client, registered_gp)
    allergy = Entry.objects.get(patient=record, resource_type="AllergyIntolerance")
    Entry.objects.filter(pk=allergy.pk).update(code="716186003")
    confirm_basis(client, record)
    page = main_html(client.get(f"/record/{record.public_id}/"))
    assert "No known allergies" in page
    assert "Nothing recorded" not in page

    Entry.objects.filter(pk=allergy.pk).delete()
    page = main_html(client.get(f"/record/{record.public_id}/"))
    assert "Nothing recorded" in page
    assert "does not mean the person has no allergies" in page


def test_the_sources_panel_names_every_connected_service_and_what_it_sent(
    client: Client, registered_gp, record: Patient
) -> None:
    Organisation.objects.create(
        ods_code="ZNEW1", name="Quiet Hospice", kind="other", dsa_start="2025-01-01"
    )
    Organisation.objects.filter(ods_code="ZAC01").update(
        last_feed_at=datetime.datetime(2026, 11, 3, 9, 30, tzinfo=datetime.UTC)
    )
    signed_in(client, registered_gp)
    confirm_basis(client, record)
    page = main_html(client.get(f"/record/{record.public_id}/"))
    assert "Where this record comes from" in page
    assert "Quiet Hospice" in page
    assert "Nothing shown" in page  # the hospice sent nothing about this person
    assert "Nothing yet" in page  # and nothing at all
    assert "3 Nov 2026 09:30" in page


def test_if_the_audit_write_fails_nothing_is_shown(registered_gp, record: Patient) -> None:
    client = Client(raise_request_exception=False)
    signed_in(client, registered_gp)
    confirm_basis(client, record)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit store unavailable'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER test_refuse BEFORE INSERT ON audit_event "
            "FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse()"
        )
    response = client.get(f"/record/{record.public_id}/")
    assert response.status_code == 500
    assert b"penicillin" not in response.content
    assert b"Metformin" not in response.content


def test_the_explicit_consent_model_asks_for_permission_now(
    client: Client, registered_gp, record: Patient, settings
) -> None:
    settings.CONSENT_MODEL = "explicit"
    signed_in(client, registered_gp)
    page = main_html(client.get(f"/access/{record.public_id}/"))
    assert "The person has given me permission to view their shared care record now" in page
    confirm_basis(client, record)
    assert AccessBasis.objects.get(user=registered_gp).kind == BasisKind.CONSENT


def test_opting_out_removes_the_basis_and_the_record(
    client: Client, registered_gp, record: Patient
) -> None:
    from optout.models import OptOutRoute
    from optout.services import optout_register

    signed_in(client, registered_gp)
    confirm_basis(client, record)
    optout_register(
        nhs_number=record.nhs_number, practice=Organisation.objects.get(ods_code="Z81001"),
        route=OptOutRoute.PRACTICE_REQUEST, recorded_by_system="test",
    )  # fmt: skip
    assert not AccessBasis.objects.exists()
    assert client.get(f"/record/{record.public_id}/").status_code == 404


def test_a_role_that_reads_no_records_is_refused(client: Client, record: Patient) -> None:
    from sharedrecord.models import User

    clerk = User.objects.create_user(
        "clerk", password="x-long-password-1", organisation=Organisation.objects.get(ods_code="Z81001"),
        role="admin-clerk",
    )  # fmt: skip
    signed_in(client, clerk)
    assert client.get(f"/access/{record.public_id}/").status_code == 403
    assert client.get(f"/record/{record.public_id}/").status_code == 403


def test_the_roles_page_shows_the_configured_table(client: Client, registered_gp) -> None:
    page = main_html(signed_in(client, registered_gp).get("/help/roles"))
    assert "Social worker" in page
    row = page.split("Social worker", 1)[1].split("</tr>", 1)[0]
    assert "Care plans" in row
    assert "Test results" in row.split("</td>", 2)[2]  # in "does not see"


def test_two_people_do_not_leak_into_each_other(client: Client, registered_gp) -> None:
    from sharedrecord.models import Entry

    first, second = fed_person("one"), fed_person("two")

    def entries_of(patient: Patient) -> set[str]:
        return {
            str(e)
            for e in Entry.objects.filter(patient=patient).values_list("public_id", flat=True)
        }

    signed_in(client, registered_gp)
    confirm_basis(client, first)
    one = shown_entries(client.get(f"/record/{first.public_id}/"))
    # The page shows the person's own items (an empty page would leak nothing)...
    assert len(one) >= 10
    assert one <= entries_of(first)
    # ...and a basis for one person is no basis for the other.
    assert client.get(f"/record/{second.public_id}/").status_code == 302
    confirm_basis(client, second)
    two = shown_entries(client.get(f"/record/{second.public_id}/"))
    assert len(two) >= 10
    assert two <= entries_of(second)
    assert one.isdisjoint(two)


def test_script_in_a_fed_html_document_is_inert(client: Client, registered_gp) -> None:
    import base64

    from tests.factories import feed, make_credential, partner

    person = fed_person("script")
    letter = (
        '<h2>Discharge summary</h2><p onclick="steal()">Home today.</p>'
        '<script>window.pwned = 1</script><img src=x onerror="window.pwned=1">'
        '<a href="javascript:alert(1)">more</a><iframe src="https://evil.example"></iframe>'
    )
    bundle = {
        "resourceType": "Bundle", "id": "html-letter", "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:0f4b5a8e-1c2d-4e3f-9a0b-1c2d3e4f5a6b",
             "resource": {"resourceType": "Patient", "id": "pl",
                          "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                          "value": person.nhs_number}]}},
            {"fullUrl": "urn:uuid:1f4b5a8e-1c2d-4e3f-9a0b-1c2d3e4f5a6b",
             "resource": {"resourceType": "DocumentReference", "id": "letter-html",
                          "status": "current", "type": {"text": "Discharge letter"},
                          "subject": {"reference": "urn:uuid:0f4b5a8e-1c2d-4e3f-9a0b-1c2d3e4f5a6b"},
                          "content": [{"attachment": {"contentType": "text/html",
                                       "data": base64.b64encode(letter.encode()).decode()}}]}},
        ],
    }  # fmt: skip
    assert feed(make_credential(partner("ZAC01"))[0], bundle).counts["created"] == 2
    signed_in(client, registered_gp)
    confirm_basis(client, person)
    from sharedrecord.models import Entry

    html_entry = Entry.objects.get(patient=person, source_id="letter-html")
    page = main_html(client.get(f"/record/{person.public_id}/documents/{html_entry.public_id}"))
    assert "<h2>Discharge summary</h2><p>Home today.</p>" in page
    for active in ("<script", "onerror", "onclick", "javascript:", "<iframe", "pwned"):
        assert active not in page, active


# ------------------------------------------------------------------ a section, page by page


def test_a_long_section_is_paged_newest_first_and_each_page_audits_only_its_items(
    client: Client, registered_gp: User
) -> None:
    record = fed_person("paged")
    feed_long_results(record, SECTION_PAGE_SIZE + 30)
    signed_in(client, registered_gp)
    assert confirm_basis(client, record).status_code == 302
    first = client.get(f"/record/{record.public_id}/results")
    second = client.get(f"/record/{record.public_id}/results", {"page": "2"})
    assert first.status_code == second.status_code == 200
    on_first, on_second = shown_entries(first), shown_entries(second)
    assert len(on_first) == SECTION_PAGE_SIZE
    assert on_second
    assert not on_first & on_second
    total = Entry.objects.filter(patient=record, section="results").count()
    assert len(on_first) + len(on_second) == total  # every item is on one of the pages
    assert f"Showing items 1 to {SECTION_PAGE_SIZE} of {total}" in main_html(first)
    assert 'href="?page=2"' in main_html(first)
    assert 'href="?page=1"' in main_html(second)
    events = _events(registered_gp, AuditAction.SECTION_VIEW)[-2:]
    # Each page's items, and the alerts its banner names (shown, so audited).
    assert [set(e.detail["entries"]) for e in events] == [
        on_first | set(banner_entries(first)),
        on_second | set(banner_entries(second)),
    ]
    assert [e.detail["page"] for e in events] == [1, 2]
    # Newest first: every item on page 2 is older than every item on page 1.
    when = dict(
        Entry.objects.filter(public_id__in=on_first | on_second).values_list(
            "public_id", "effective_at"
        )
    )
    first_dates = [d for i in on_first if (d := when[uuid.UUID(i)]) is not None]
    second_dates = [d for i in on_second if (d := when[uuid.UUID(i)]) is not None]
    assert len(first_dates) + len(second_dates) == total  # every result here is dated
    assert min(first_dates) >= max(second_dates)
    newest = Entry.objects.filter(patient=record, section="results").latest("effective_at")
    assert str(newest.public_id) in on_first


@pytest.mark.parametrize(
    ("page", "status"), [("0", 400), ("two", 400), ("-1", 400), ("²", 400), ("9", 404)]
)
def test_a_page_that_is_not_there_says_so_and_shows_nothing(
    client: Client, registered_gp: User, record: Patient, page: str, status: int
) -> None:
    signed_in(client, registered_gp)
    assert confirm_basis(client, record).status_code == 302
    response = client.get(f"/record/{record.public_id}/results", {"page": page})
    assert response.status_code == status
    assert "There is no such page in this part of the record" in main_html(response)
    assert _events(registered_gp, AuditAction.SECTION_VIEW) == []  # nothing was shown


def _items_from(page: str, service: str) -> str:
    """What the sources panel says a service holds about the person, shown to the viewer."""
    panel = page[page.index('id="sources"') :]
    row = re.search(rf"{re.escape(service)}<br>.*?</tr>", panel, re.DOTALL)
    assert row is not None, service
    cells = re.findall(r'<td class="nhsuk-table__cell">(.*?)</td>', row.group(0), re.DOTALL)
    return str(cells[-1])


def test_the_kept_source_counts_follow_every_change_to_the_record(
    client: Client, registered_gp: User, treating_clinician: User
) -> None:
    record = fed_person("counts")
    summary = f"/record/{record.public_id}/"
    acute = Organisation.objects.get(ods_code="ZAC01").name
    signed_in(client, registered_gp)
    confirm_basis(client, record)
    before = _items_from(main_html(client.get(summary)), acute)
    assert before == _items_from(main_html(client.get(summary)), acute)
    # A new attendance arrives: the next page counts it.
    credential, _ = make_credential(partner("ZAC01"))
    again = dataclasses.replace(PEOPLE[0], key="counts2", nhs_number_sent=record.nhs_number)
    assert feed(credential, acute_attendance(again)).status == "done"
    grown = _items_from(main_html(client.get(summary)), acute)
    assert int(grown.split()[0]) > int(before.split()[0])
    # One of them goes: the next page counts that too.
    acute_items = Entry.objects.filter(patient=record, source_org__ods_code="ZAC01")
    acute_items.exclude(section="demographics").order_by("id")[0].delete()
    fewer = _items_from(main_html(client.get(summary)), acute)
    assert int(fewer.split()[0]) == int(grown.split()[0]) - 1
    # Another viewer, another policy: the restricted item is withheld from them only.
    signed_in(client, treating_clinician)
    confirm_basis(client, record)
    assert "1 item withheld" in main_html(client.get(summary))
    signed_in(client, registered_gp)
    confirm_basis(client, record)
    assert "withheld" not in main_html(client.get(summary))


def test_every_record_page_says_the_basis_it_is_viewed_under_except_emergency_access(
    client: Client, unrelated_clinician: User, treating_clinician: User, record: Patient
) -> None:
    signed_in(client, unrelated_clinician)
    assert confirm_basis(client, record, claim=CLAIM).status_code == 302
    base = f"/record/{record.public_id}/"
    (letter,) = shown_entries(client.get(f"{base}documents"))
    for path in ("", "problems", "timeline", f"documents/{letter}"):
        page = main_html(client.get(base + path))
        viewing = re.search(r'<p class="nhsuk-body-s sr-viewing-as">(.*?)</p>', page, re.S)
        assert viewing is not None, path
        assert "Viewing as: Directly involved" in viewing.group(1)
        # A described relationship is flagged where the viewer reads it.
        assert "<strong>(relationship you described;" in viewing.group(1)
    signed_in(client, treating_clinician)
    client.post(
        f"/access/{record.public_id}/emergency",
        {"reason_code": "OVRER", "reason_text": "Unconscious in resus, no family present"},
    )
    for path in ("", "problems", "timeline", f"documents/{letter}"):
        page = main_html(client.get(base + path))
        assert "Viewing as:" not in page  # the banner's emergency access notice says it
        assert "You are viewing this record under emergency access" in page
