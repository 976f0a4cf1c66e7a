"""Who may assert what: only the registration authority, or a practice's own feed about itself,
sets the registered GP practice; every rule that hangs off it follows the authoritative value.

Each numbered finding of the outside security review is a test here, through the public
pages and APIs (issue "Who may assert what", findings 1, 4 and 5).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audit.models import AuditAction, AuditEvent
from ingestion.demo import PEOPLE, BundleBuilder
from optout.models import OptOutRoute
from optout.services import optout_register
from sharedrecord.access import (
    entries_visible,
    entries_visible_among,
    notifications_shown_as,
    relationships_of,
    view_policy_for,
)
from sharedrecord.models import (
    AccessBasis,
    BasisKind,
    Entry,
    Organisation,
    OrganisationKind,
    Patient,
    User,
)
from sharedrecord.organisations import organisation_grant_optout_management
from tests.factories import (
    confirm_basis,
    feed,
    main_html,
    make_credential,
    next_nhs_number,
    shown_entries,
    signed_in,
)
from tests.fhirapi import fhir_get, staff_token

pytestmark = pytest.mark.django_db

KINDS = {
    "Z81001": OrganisationKind.GP_PRACTICE,
    "Z81002": OrganisationKind.GP_PRACTICE,
    "ZAC01": OrganisationKind.ACUTE,
    "ZPH01": OrganisationKind.PHARMACY,
    "ZSC01": OrganisationKind.SOCIAL_CARE,
    "ZDS01": OrganisationKind.REGISTRATION_AUTHORITY,
}
EMERGENCY = {"reason_code": "OVRER", "reason_text": "Unconscious in resus, no history"}
SOCIAL_WORK = "Allocated social worker for the care package"


def org(ods: str) -> Organisation:
    organisation, _ = Organisation.objects.get_or_create(
        ods_code=ods, defaults={"name": f"Org {ods}", "kind": KINDS[ods], "dsa_start": "2025-01-01"}
    )
    return organisation


def staff(username: str, ods: str, role: str) -> User:
    return User.objects.create_user(
        username, password="persona-password-123", organisation=org(ods), role=role
    )


def patient_says(number: str, sender: str, gp: str, tag: str = "p", **more: Any) -> None:
    """`sender`'s feed sends a Patient for the person naming `gp` as their GP practice."""
    person = dataclasses.replace(PEOPLE[0], key=f"k{number}", nhs_number_sent=number, gp_ods=gp)
    builder = BundleBuilder(person, sender, tag).patient()
    builder.entries[0]["resource"].update(more)
    credential, _ = make_credential(org(sender))
    message = feed(credential, builder.bundle())
    assert message.status == "done", message.issues


def registered(number: str) -> str:
    return Patient.objects.get(nhs_number=number).registered_gp_ods


def test_a_hospitals_patient_naming_another_practice_leaves_the_opt_out_with_the_real_practice(
    client: Client,
) -> None:
    number = next_nhs_number()
    patient_says(number, "Z81001", "Z81001")
    patient_says(number, "ZAC01", "Z81002")  # the hospital's system holds an old GP
    assert registered(number) == "Z81001"
    gp = staff("gp.z81001", "Z81001", "gp")
    organisation_grant_optout_management(user=gp, organisation=org("Z81001"))
    client.force_login(gp)
    answer = client.post("/api/v1/optouts/register", {"nhs_number": number})
    assert answer.status_code == 201, answer.content


def test_a_pharmacy_naming_itself_as_gp_invents_no_relationship(client: Client) -> None:
    number = next_nhs_number()
    patient_says(number, "Z81001", "Z81001")
    patient_says(number, "ZPH01", "ZPH01")
    patient = Patient.objects.get(nhs_number=number)
    assert patient.registered_gp_ods == "Z81001"
    client.force_login(staff("pharmacist.a", "ZPH01", "pharmacist"))
    page = main_html(client.get(f"/access/{patient.public_id}/"))
    assert "registered with your practice" not in page
    # With no relationship in the feeds the pharmacist must describe theirs (and is reviewed).
    assert confirm_basis(client, patient).status_code == 400
    assert (
        confirm_basis(client, patient, claim="Dispensing an urgent prescription").status_code == 302
    )
    assert AccessBasis.objects.get(patient=patient).self_claimed


def test_the_practice_a_hospital_names_sees_none_of_the_persons_accesses(client: Client) -> None:
    number = next_nhs_number()
    patient_says(number, "Z81001", "Z81001")
    patient_says(number, "ZAC01", "Z81002")
    patient = Patient.objects.get(nhs_number=number)
    doctor = staff("ae.a", "ZAC01", "clinical-practitioner")
    client.force_login(doctor)
    client.post(f"/access/{patient.public_id}/emergency", EMERGENCY)
    assert client.get(f"/record/{patient.public_id}/").status_code == 200
    glass = AuditEvent.objects.get(action=AuditAction.BREAK_GLASS, patient_id=patient.public_id)
    assert glass.patient_gp_ods == "Z81001"

    wrong = staff("privacy.z81002", "Z81002", "privacy-officer")
    client.force_login(wrong)
    seen = client.get("/api/v1/audit/events", {"nhs_number": number}).json()["results"]
    assert seen == []
    assert glass.id not in [r["id"] for r in client.get("/api/v1/audit/reviews").json()["results"]]
    refused = client.post(
        "/api/v1/audit/reviews",
        {"event": glass.id, "outcome": "justified", "note": "Not ours to close"},
        content_type="application/json",
    )
    assert refused.status_code == 400

    right = staff("privacy.z81001", "Z81001", "privacy-officer")
    client.force_login(right)
    queue = [r["id"] for r in client.get("/api/v1/audit/reviews").json()["results"]]
    assert glass.id in queue
    text = json.dumps(client.get("/api/v1/audit/events", {"nhs_number": number}).json())
    assert "Unconscious in resus" in text


def test_a_practice_cannot_make_itself_gp_of_another_practices_patient(client: Client) -> None:
    number = next_nhs_number()
    patient_says(number, "Z81001", "Z81001")
    patient_says(number, "Z81002", "Z81002")
    assert registered(number) == "Z81001"
    patient = Patient.objects.get(nhs_number=number)
    client.force_login(staff("gp.z81002", "Z81002", "gp"))
    assert "registered with your practice" not in main_html(
        client.get(f"/access/{patient.public_id}/")
    )
    # When the first practice lets the person go, the other's claim holds.
    patient_says(number, "Z81001", "Z81001", active=False)
    assert registered(number) == "Z81002"


def test_the_registration_authority_moves_the_person_and_the_move_is_audited(
    client: Client,
) -> None:
    number = next_nhs_number()
    patient_says(number, "Z81001", "Z81001")
    patient = Patient.objects.get(nhs_number=number)
    doctor = staff("ae.b", "ZAC01", "clinical-practitioner")
    client.force_login(doctor)
    client.post(f"/access/{patient.public_id}/emergency", EMERGENCY)
    before = AuditEvent.objects.get(action=AuditAction.BREAK_GLASS, patient_id=patient.public_id)

    patient_says(number, "ZDS01", "Z81002", tag="pds")
    assert registered(number) == "Z81002"
    (move,) = AuditEvent.objects.filter(
        action=AuditAction.REGISTRATION_CHANGE, patient_id=patient.public_id
    )
    assert (move.detail["from"], move.detail["to"], move.actor_org_ods) == (
        "Z81001", "Z81002", "ZDS01",
    )  # fmt: skip
    # The old practice's own claim no longer moves anything: the authority decides.
    patient_says(number, "Z81001", "Z81001", tag="again", telecom=[])
    assert registered(number) == "Z81002"

    client.force_login(doctor)
    client.get(f"/record/{patient.public_id}/")
    after = AuditEvent.objects.filter(
        action=AuditAction.RECORD_VIEW, patient_id=patient.public_id
    ).get()
    old = staff("privacy.old", "Z81001", "privacy-officer")
    client.force_login(old)
    ids = [
        r["id"]
        for r in client.get("/api/v1/audit/events", {"nhs_number": number}).json()["results"]
    ]
    assert before.id in ids  # what happened while the person was theirs
    assert after.id not in ids  # and nothing after
    new = staff("privacy.new", "Z81002", "privacy-officer")
    client.force_login(new)
    ids = [
        r["id"]
        for r in client.get("/api/v1/audit/events", {"nhs_number": number}).json()["results"]
    ]
    assert after.id in ids
    assert before.id not in ids


def test_an_opted_out_persons_opt_out_follows_them_to_their_new_practice(client: Client) -> None:
    number = next_nhs_number()
    patient_says(number, "Z81001", "Z81001")
    old_gp = staff("gp.old", "Z81001", "gp")
    optout_register(
        nhs_number=number, practice=org("Z81001"), route=OptOutRoute.PRACTICE_REQUEST,
        recorded_by=old_gp,
    )  # fmt: skip
    org("Z81002")
    patient_says(number, "ZDS01", "Z81002", tag="pds")
    assert not Patient.objects.filter(nhs_number=number).exists()  # still opted out
    new_gp = staff("gp.new", "Z81002", "gp")
    organisation_grant_optout_management(user=new_gp, organisation=org("Z81002"))
    client.force_login(new_gp)
    listed = client.get("/api/v1/optouts/").json()["results"]
    assert [row["nhs_number"] for row in listed] == [number]
    assert client.post("/api/v1/optouts/withdraw", {"nhs_number": number}).status_code == 200


def test_sources_that_disagree_are_flagged_on_the_page_and_in_the_api(client: Client) -> None:
    number = next_nhs_number()
    patient_says(number, "Z81001", "Z81001")
    moved = [
        {"use": "home", "line": ["9 Canal Wharf"], "city": "Borough Town", "postalCode": "ZZ9 9ZZ"}
    ]
    patient_says(number, "ZAC01", "Z81001", address=moved)
    patient = Patient.objects.get(nhs_number=number)
    assert patient.postcode != "ZZ9 9ZZ"  # the registered practice's address is shown
    gp = staff("gp.c", "Z81001", "gp")
    client.force_login(gp)
    confirm_basis(client, patient)
    page = main_html(client.get(f"/record/{patient.public_id}/"))
    assert "Other services hold a different address" in page
    token = staff_token(client, gp)
    resource = fhir_get(client, token, f"Patient/{patient.public_id}").json_body
    (flag,) = resource["extension"]
    assert [c["code"] for c in flag["valueCodeableConcept"]["coding"]] == ["address"]


GP_PRACTICE, REGISTRATION_AUTHORITY = (
    OrganisationKind.GP_PRACTICE,
    OrganisationKind.REGISTRATION_AUTHORITY,
)
# A sender, its kind, the practice its Patient names, and whether it marks the person inactive.
SENDERS = st.sampled_from(sorted(KINDS))
MESSAGES = st.lists(
    st.tuples(SENDERS, st.sampled_from(["Z81001", "Z81002", "ZAC01", "ZPH01", ""]), st.booleans()),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(messages=MESSAGES)
# The authority names a code before we know the organisation; it then turns out a pharmacy.
@example(messages=[("ZDS01", "ZPH01", False), ("ZPH01", "", False)])
def test_only_the_authority_or_the_practice_itself_ever_moves_the_registration(
    messages: list[tuple[str, str, bool]],
) -> None:
    number = next_nhs_number()
    previous = ""
    for i, (sender, named, inactive) in enumerate(messages):
        extra: dict[str, Any] = {"active": False} if inactive else {}
        person = dataclasses.replace(
            PEOPLE[0], key=f"h{number}", nhs_number_sent=number, gp_ods=named
        )
        builder = BundleBuilder(person, sender, f"m{i}").patient()
        resource = builder.entries[0]["resource"]
        resource.update(extra)
        if not named:
            resource.pop("generalPractitioner")
        credential, _ = make_credential(org(sender))
        feed(credential, builder.bundle())
        now = registered(number)
        if KINDS[sender] == OrganisationKind.REGISTRATION_AUTHORITY:
            # The authority decides, but naming a pharmacy or hospital registers nobody.
            not_a_practice = (
                Organisation.objects.filter(ods_code=named)
                .exclude(kind=OrganisationKind.GP_PRACTICE)
                .exists()
            )
            assert now == ("" if not_a_practice else named)
        elif now != previous and not now and KINDS.get(previous) not in (None, GP_PRACTICE):
            # The authority named a code we did not know yet; now that its organisation
            # is known not to be a practice, the rule says "not known" (it is no
            # registration), whichever message made the record look again.
            assert any(KINDS[s] == REGISTRATION_AUTHORITY for s, _, _ in messages[:i])
        elif now != previous:
            # Only a practice's own word about itself moves it, and only while no
            # authority has spoken: it takes the person, or it lets them go.
            assert KINDS[sender] == OrganisationKind.GP_PRACTICE
            authority_spoke = any(
                KINDS[s] == OrganisationKind.REGISTRATION_AUTHORITY for s, _, _ in messages[: i + 1]
            )
            assert not authority_spoke
            took = now == sender == named and not inactive
            released = previous == sender and (named != sender or inactive)
            assert took or released, (previous, now, sender, named, inactive)
        previous = now


# ------------------------------------------------------------------ what the viewer may see


def test_the_sources_panel_counts_only_what_the_viewer_may_see(
    client: Client, social_worker, record: Patient
) -> None:
    signed_in(client, social_worker)
    confirm_basis(client, record, claim=SOCIAL_WORK)
    page = main_html(client.get(f"/record/{record.public_id}/"))
    panel = page[page.index('id="sources"') :]
    row = panel[panel.index("Borough Mental Health") :]
    assert row[: row.index("</tr>")].count("Nothing shown") == 1
    pharmacist = staff("pharmacist.b", "ZPH01", "pharmacist")
    signed_in(client, pharmacist)
    confirm_basis(client, record, claim="Dispensing an urgent prescription")
    for section in ("", "medications", "problems"):
        page = main_html(client.get(f"/record/{record.public_id}/{section}"))
        # The withheld diagnosis is counted once, overall, on every page: never per
        # section, and never beside the organisation that sent it.
        assert page.count("1 item withheld") == 1, section
        panel = page[page.index('id="sources"') :]
        row = panel[panel.index("Borough Mental Health") :]
        assert "Nothing shown" in row[: row.index("</tr>")]


def test_an_encounters_reason_is_not_shown_to_roles_without_problems(
    client: Client, social_worker, record: Patient
) -> None:
    signed_in(client, social_worker)
    confirm_basis(client, record, claim=SOCIAL_WORK)
    page = main_html(client.get(f"/record/{record.public_id}/encounters"))
    assert "A&amp;E" in page or "Emergency" in page or "EMER" in page
    assert "Chest pain" not in page
    token = staff_token(client, social_worker)
    bundle = fhir_get(client, token, "Encounter", {"patient": str(record.public_id)}).json_body
    encounters = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"
    ]
    assert encounters
    assert "Chest pain" not in json.dumps(encounters)
    redacted = [
        r for r in encounters if any(s["code"] == "REDACTED" for s in r["meta"].get("security", []))
    ]
    assert redacted


def test_a_gp_elsewhere_who_describes_a_relationship_does_not_see_restricted_diagnoses(
    client: Client, registered_gp, record: Patient
) -> None:
    other_gp = staff("gp.hill", "Z81002", "gp")
    signed_in(client, other_gp)
    confirm_basis(client, record, claim="Temporary resident seen in clinic today")
    page = main_html(client.get(f"/record/{record.public_id}/problems"))
    assert "Depressive disorder" not in page
    assert "1 item withheld" in page
    token = staff_token(client, other_gp)
    everything = fhir_get(client, token, f"Patient/{record.public_id}/$everything").json_body
    assert "Depressive disorder" not in json.dumps(everything)
    # Break-glass still opens it for a GP; the registered practice sees it under direct care.
    signed_in(client, other_gp)
    client.post(f"/access/{record.public_id}/emergency", EMERGENCY)
    assert "Depressive disorder" in main_html(client.get(f"/record/{record.public_id}/problems"))
    signed_in(client, registered_gp)
    confirm_basis(client, record)
    assert "Depressive disorder" in main_html(client.get(f"/record/{record.public_id}/problems"))


def test_a_source_whose_care_is_all_withheld_is_not_revealed_by_its_copy_of_demographics(
    client: Client, social_worker, registered_gp, record: Patient
) -> None:
    mental_health = Organisation.objects.get(ods_code="ZMH02")
    theirs = Entry.objects.get(patient=record, source_org=mental_health, resource_type="Patient")
    signed_in(client, social_worker)
    confirm_basis(client, record)
    page = client.get(f"/record/{record.public_id}/demographics")
    assert page.status_code == 200
    shown = shown_entries(page)
    assert shown  # the other sources' copies are there
    assert str(theirs.public_id) not in shown
    token = staff_token(client, social_worker)
    everything = fhir_get(client, token, f"Patient/{record.public_id}/$everything").json_body
    ids = {e["resource"]["id"] for e in everything["entry"]}
    assert str(theirs.public_id) not in ids
    # The registered GP sees the trust's care, so its copy too.
    signed_in(client, registered_gp)
    confirm_basis(client, record)
    assert str(theirs.public_id) in shown_entries(
        client.get(f"/record/{record.public_id}/demographics")
    )


def test_a_refused_opt_out_check_tells_the_asking_practice_nothing_through_its_audit(
    client: Client,
) -> None:
    number = next_nhs_number()
    patient_says(number, "Z81001", "Z81001")
    other = staff("gp.z81002b", "Z81002", "gp")
    organisation_grant_optout_management(user=other, organisation=org("Z81002"))
    client.force_login(other)
    refused = client.post("/api/v1/optouts/check", {"nhs_number": number})
    assert refused.status_code == 403
    assert "Z81001" not in refused.content.decode()
    officer = staff("privacy.z81002b", "Z81002", "privacy-officer")
    client.force_login(officer)
    ours = client.get("/api/v1/audit/events", {"scope": "staff"})
    assert ours.status_code == 200
    checks = [e for e in ours.json()["results"] if e["action"] == AuditAction.IDENTITY_VIEW]
    assert checks  # the officer sees their own staff's refused check...
    assert "Z81001" not in json.dumps(checks)  # ...but not where the person is registered


def test_a_withheld_reason_does_not_survive_in_the_narrative(client: Client, social_worker) -> None:
    number = next_nhs_number()
    patient_says(number, "Z81001", "Z81001")
    person = dataclasses.replace(PEOPLE[0], key=f"k{number}", nhs_number_sent=number)
    builder = BundleBuilder(person, "ZAC01", "narr").patient()
    builder.add(
        "Encounter",
        {
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
            "text": {
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">Seen for chest pain</div>',
            },
            "reasonCode": [{"text": "chest pain"}],
            "period": {"start": "2026-11-20T09:00:00Z", "end": "2026-11-20T11:00:00Z"},
        },
    )
    credential, _ = make_credential(org("ZAC01"))
    assert feed(credential, builder.bundle()).status == "done"
    patient = Patient.objects.get(nhs_number=number)
    token = staff_token(client, social_worker)
    bundle = fhir_get(client, token, "Encounter", {"patient": str(patient.public_id)}).json_body
    (encounter,) = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"
    ]
    assert "chest pain" not in json.dumps(encounter).lower()
    assert "text" not in encounter
    assert any(s["code"] == "REDACTED" for s in encounter["meta"]["security"])


def test_an_authority_naming_a_pharmacy_registers_nobody() -> None:
    number = next_nhs_number()
    patient_says(number, "Z81001", "Z81001")
    org("ZPH01")
    patient_says(number, "ZDS01", "ZPH01", tag="pds")
    assert registered(number) == ""


def test_each_demographic_field_comes_from_the_first_source_that_sends_it() -> None:
    number = next_nhs_number()
    patient_says(number, "Z81001", "Z81001")
    # The authority sends the registration and an address, but no name or birth date.
    person = dataclasses.replace(
        PEOPLE[0], key=f"k{number}", nhs_number_sent=number, gp_ods="Z81001"
    )
    builder = BundleBuilder(person, "ZDS01", "pds").patient()
    resource = builder.entries[0]["resource"]
    for element in ("name", "birthDate", "gender"):
        resource.pop(element)
    resource["address"] = [{"use": "home", "line": ["1 New Road"], "postalCode": "ZZ2 2ZZ"}]
    assert feed(make_credential(org("ZDS01"))[0], builder.bundle()).status == "done"
    patient = Patient.objects.get(nhs_number=number)
    assert (patient.family_name, str(patient.birth_date)) == ("Ellison", "1941-03-14")
    assert patient.postcode == "ZZ2 2ZZ"  # the authority's address comes first
    assert patient.registered_gp_ods == "Z81001"
    assert patient.demographics_disputed == ["address"]


def test_a_registration_change_is_audited_only_when_there_was_one() -> None:
    number = next_nhs_number()
    patient_says(number, "Z81001", "Z81001")
    patient = Patient.objects.get(nhs_number=number)
    changes = AuditEvent.objects.filter(
        action=AuditAction.REGISTRATION_CHANGE, patient_id=patient.public_id
    )
    assert not changes.exists()  # a first registration is no move
    patient_says(number, "ZDS01", "Z81002", tag="pds")
    assert [(e.detail["from"], e.detail["to"]) for e in changes] == [("Z81001", "Z81002")]


@pytest.mark.parametrize(
    "persona", ["registered_gp", "treating_clinician", "social_worker", "unrelated_clinician"]
)
def test_the_policy_for_many_people_shows_of_each_what_their_own_policy_shows(
    persona: str, record: Patient, request: pytest.FixtureRequest
) -> None:
    # The in-app notifications list asks the policy once for everyone it lists
    # (entries_visible_among): the "knows only" rule then reads each entry's own
    # person's care and registered practice. Beside the fed person (whose mental health
    # trust's copy of the demographics is theirs alone), another registered elsewhere,
    # with copies from their own practice and a hospital and no care from either.
    other = next_nhs_number()
    patient_says(other, "Z81002", "Z81002")
    patient_says(other, "ZAC01", "Z81002")
    viewer = User.objects.select_related("organisation").get(pk=request.getfixturevalue(persona).pk)
    relationships = [r.kind for r in relationships_of(viewer=viewer, patient=record)]
    policy = view_policy_for(
        viewer=viewer, basis_kind=BasisKind.DIRECT_CARE, relationships=relationships
    )
    people = list(Patient.objects.filter(entries__isnull=False).distinct())
    each = entries_visible_among(people=[p.pk for p in people], policy=policy)
    assert record in people
    assert len(people) >= 2
    for person in people:
        own = entries_visible(patient=person, policy=policy)
        for mine, theirs in ((each.entries, own.entries), (each.hidden, own.hidden)):
            assert set(mine.filter(patient=person).values_list("pk", flat=True)) == set(
                theirs.values_list("pk", flat=True)
            ), person.nhs_number
    # The other person's registered practice's copy is shown; the hospital's is shown
    # only to a viewer who sees the hospital's care (here, none of it: there is none).
    copies = each.entries.filter(patient__nhs_number=other).values_list(
        "source_org__ods_code", flat=True
    )
    assert "Z81002" in set(copies)
    assert "ZAC01" not in set(copies) or policy.organisation_id == org("ZAC01").pk
    # The notifications list tells an entry only as the person's it was found under: one a
    # merge has moved to someone else since is told nothing.
    told = each.entries.filter(patient=record).values_list("pk", flat=True).first()
    assert told is not None
    stranger = next(p for p in people if p != record)
    for whose, expected in ((record.pk, {told: "item"}), (stranger.pk, {})):
        assert (
            notifications_shown_as(
                viewer=viewer, entries=[(whose, told)], relationships=relationships
            )
            == expected
        )


@pytest.mark.parametrize(
    "persona", ["registered_gp", "treating_clinician", "social_worker", "unrelated_clinician"]
)
def test_one_sections_policy_shows_what_the_whole_policy_shows_in_that_section(
    persona: str, record: Patient, request: pytest.FixtureRequest
) -> None:
    # Pages ask for their own sections (the summary's lists, a section, the banner); the
    # policy then leaves out its rule on demographics. Each must show exactly what the
    # whole record's policy shows in that section, restricted items and the mental health
    # trust's copy of the demographics included.
    viewer = User.objects.select_related("organisation").get(pk=request.getfixturevalue(persona).pk)
    relationships = [r.kind for r in relationships_of(viewer=viewer, patient=record)]
    policy = view_policy_for(
        viewer=viewer, basis_kind=BasisKind.DIRECT_CARE, relationships=relationships
    )
    everything = entries_visible(patient=record, policy=policy)
    whole = set(everything.entries.values_list("pk", flat=True))
    assert whole
    for section in policy.sections:
        alone = entries_visible(patient=record, policy=policy, sections=frozenset({section}))
        assert set(alone.entries.values_list("pk", flat=True)) == set(
            everything.entries.filter(section=section).values_list("pk", flat=True)
        ), section
    # The sources panel counts the care items shown: everything shown but demographics.
    assert set(everything.in_scope.filter(everything.items_where).values_list("pk", flat=True)) == (
        set(everything.entries.exclude(section="demographics").values_list("pk", flat=True))
    )
