"""Clinical fidelity: each finding of the clinical safety review is a named test.

The review (issue "Clinical fidelity") sent probe entries through the feeds
and compared what a GP saw with the source resource. Each test here sends
its probe through the real feed pipeline, reads the real record pages as a
registered GP and, where the finding concerns it, the FHIR API; each failed
on the code before the fix. docs/hazard-log.md names them as the controls.
"""

from __future__ import annotations

import datetime

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent
from sharedrecord.models import Entry
from sharedrecord.record import SUMMARY_CURRENT
from tests.factories import next_nhs_number
from tests.fhirapi import fhir_get, staff_token
from tests.sharedrecord.fidelity import (
    Probe,
    api_resource,
    as_sent,
    block,
    bundle_for,
    exact,
    page,
    probe,
    row,
    send,
    words,
)

pytestmark = pytest.mark.django_db

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def cc(system: str, code: str, display: str) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def condition(name: str, code: str, *, clinical: str = "active", verification: str = "") -> dict:
    resource = {
        "resourceType": "Condition",
        "clinicalStatus": cc(CLINICAL, clinical, clinical.capitalize()),
        "code": cc(SNOMED, code, name),
        "onsetDateTime": "2024-02-10",
    }
    if verification:
        resource["verificationStatus"] = cc(VERIFICATION, verification, verification.capitalize())
    return resource


def observation(name: str, **value: object) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": name},
            "effectiveDateTime": "2025-06-01T09:30:00+01:00", **value}  # fmt: skip


def test_finding_01_a_refuted_or_provisional_diagnosis_is_never_an_unqualified_active_problem(
    client: Client, registered_gp
) -> None:
    sent = probe(
        condition("Acute appendicitis", "85189001", verification="refuted"),
        condition("Pulmonary embolism", "59282003", verification="provisional"),
        condition("Asthma", "195967001", verification="confirmed"),
    )
    appendicitis, embolism, asthma = (sent.entry(f"condition-{n}") for n in (1, 2, 3))
    token = staff_token(client, registered_gp)
    summary = page(client, registered_gp, sent.patient)
    active = block(summary, "problems")
    assert "Acute appendicitis" not in active  # refuted: not a problem the person has
    assert "Pulmonary embolism Provisional" in row(summary, embolism)
    assert "Asthma" in row(summary, asthma)
    assert "Confirmed" not in row(summary, asthma)  # the ordinary state needs no word
    problems = page(client, registered_gp, sent.patient, "problems")
    assert "Acute appendicitis Refuted" in row(problems, appendicitis)
    assert "Pulmonary embolism Provisional" in row(problems, embolism)
    # The API says the same: the verification status as the source sent it.
    for entry in (appendicitis, embolism, asthma):
        resource = api_resource(client, token, entry)
        assert resource["verificationStatus"] == entry.resource["verificationStatus"]


def test_finding_02_every_kind_of_result_value_is_shown(client: Client, registered_gp) -> None:
    sent = probe(
        observation("Blood pressure", component=[
            {"code": cc(LOINC, "8480-6", "Systolic blood pressure"),
             "valueQuantity": {"value": 142, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
            {"code": cc(LOINC, "8462-4", "Diastolic blood pressure"),
             "valueQuantity": {"value": 91, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
        ]),
        observation("Pregnancy test", valueBoolean=True),
        observation("Number of falls in the last year", valueInteger=3),
        observation("Rubella antibody titre", valueRatio={
            "numerator": {"value": 1}, "denominator": {"value": 128}}),
        observation("Target INR range", valueRange={
            "low": {"value": 2.5, "unit": "INR"}, "high": {"value": 3.5, "unit": "INR"}}),
        observation("ECG lead II", valueSampledData={
            "origin": {"value": 0, "unit": "mV"}, "period": 10, "dimensions": 1,
            "data": "1 2 4 2 1"}),
        observation("Serum potassium", dataAbsentReason=cc(
            "http://terminology.hl7.org/CodeSystem/data-absent-reason", "error", "Error")),
    )  # fmt: skip
    results = page(client, registered_gp, sent.patient, "results")
    expected = {
        1: ["Systolic blood pressure: 142 mmHg", "Diastolic blood pressure: 91 mmHg"],
        2: ["Result: Yes"],
        3: ["Result: 3"],
        4: ["Result: 1:128"],
        5: ["Result: 2.5 INR to 3.5 INR"],
        6: ["Result: Sampled data: 5 samples, every 10 ms, origin 0 mV: 1 2 4 2 1"],
        7: ["Result: Result absent: Error"],
    }
    for n, texts in expected.items():
        shown = row(results, sent.entry(f"observation-{n}"))
        for text in texts:
            assert text in shown, (text, shown)


def test_finding_03_a_structured_dose_is_shown_with_timing_route_as_needed_and_maximum(
    client: Client, registered_gp
) -> None:
    sent = probe({
        "resourceType": "MedicationStatement", "status": "active",
        "medicationCodeableConcept": {"text": "Paracetamol 120mg/5ml oral suspension"},
        "effectiveDateTime": "2025-05-01",
        "dosage": [{
            "timing": {"repeat": {"frequency": 1, "period": 4, "periodUnit": "h"}},
            "asNeededBoolean": True,
            "route": cc(SNOMED, "26643006", "Oral"),
            "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "ml", "system": UCUM,
                                              "code": "mL"}}],
            "maxDosePerPeriod": {"numerator": {"value": 30, "unit": "ml"},
                                 "denominator": {"value": 1, "unit": "day", "system": UCUM,
                                                 "code": "d"}},
        }],
    })  # fmt: skip
    medicine = sent.entry("medicationstatement-1")
    for section in ("", "medications"):
        shown = row(page(client, registered_gp, sent.patient, section), medicine)
        assert "Dose: 5 ml every 4 hours as needed; route: Oral; maximum 30 ml a day" in shown


def test_finding_04_allergy_criticality_type_and_category_are_shown(
    client: Client, registered_gp
) -> None:
    sent = probe(
        {"resourceType": "AllergyIntolerance", "criticality": "high", "type": "allergy",
         "category": ["medication"], "code": cc(SNOMED, "91936005", "Allergy to penicillin"),
         "recordedDate": "2019-04-02"},
        {"resourceType": "AllergyIntolerance", "criticality": "low", "type": "intolerance",
         "category": ["food"], "code": {"text": "Lactose intolerance"},
         "recordedDate": "2020-04-02"},
    )  # fmt: skip
    penicillin, lactose = sent.entry("allergyintolerance-1"), sent.entry("allergyintolerance-2")
    for section in ("", "allergies"):
        markup = page(client, registered_gp, sent.patient, section)
        shown = row(markup, penicillin)
        assert "Allergy to penicillin High criticality" in shown
        assert "Criticality: High" in shown
        assert "Type: Allergy" in shown
        assert "Category: Medication" in shown
        other = row(markup, lactose)
        assert "Type: Intolerance (not an allergy)" in other
        assert "Category: Food" in other
        assert "Criticality: Low" in other


@pytest.mark.parametrize(
    ("code", "said", "not_said"),
    [
        ("409137002", "No known drug allergies", "No known allergies"),
        ("429625007", "No known food allergies", "No known allergies"),
        ("716186003", "No known allergies", "No known drug allergies"),
    ],
)
def test_finding_05_no_known_drug_allergy_is_not_shown_as_no_known_allergies(
    client: Client, registered_gp, code: str, said: str, not_said: str
) -> None:
    sent = probe({
        "resourceType": "AllergyIntolerance",
        "code": cc(SNOMED, code, said.removesuffix("ies") + "y"),
        "recordedDate": "2023-09-12",
    })  # fmt: skip
    allergies = block(page(client, registered_gp, sent.patient), "allergies")
    assert f"{said}, recorded by" in allergies
    assert not_said not in allergies
    if code != "716186003":
        assert "it says nothing about" in allergies  # what the statement leaves open
    assert "12 Sep 2023" in allergies


def test_finding_06_completed_medicines_and_care_plans_carry_their_status(
    client: Client, registered_gp
) -> None:
    sent = probe(
        {"resourceType": "MedicationStatement", "status": "completed",
         "medicationCodeableConcept": {"text": "Amoxicillin 500mg capsules"},
         "effectivePeriod": {"start": "2025-01-03", "end": "2025-01-10"}},
        {"resourceType": "MedicationStatement", "status": "stopped",
         "medicationCodeableConcept": {"text": "Simvastatin 40mg tablets"},
         "effectiveDateTime": "2024-03-01"},
        {"resourceType": "CarePlan", "status": "completed", "intent": "plan",
         "title": "Falls prevention programme", "period": {"start": "2024-01-01"}},
    )  # fmt: skip
    amoxicillin, simvastatin = (
        sent.entry("medicationstatement-1"),
        sent.entry("medicationstatement-2"),
    )
    plan = sent.entry("careplan-3")
    summary = page(client, registered_gp, sent.patient)
    assert "Amoxicillin" not in block(summary, "medications")  # the summary leaves them out
    assert "Falls prevention" not in block(summary, "care-plans")
    medications = page(client, registered_gp, sent.patient, "medications")
    assert "Amoxicillin 500mg capsules Completed" in row(medications, amoxicillin)
    assert "Simvastatin 40mg tablets Stopped" in row(medications, simvastatin)
    plans = page(client, registered_gp, sent.patient, "care-plans")
    assert "Falls prevention programme Completed" in row(plans, plan)


def test_finding_07_death_is_shown_in_the_banner_and_the_api(client: Client, registered_gp) -> None:
    sent = probe(
        {"resourceType": "MedicationStatement", "status": "active",
         "medicationCodeableConcept": {"text": "Digoxin 125microgram tablets"},
         "effectiveDateTime": "1988-11-01"},
        patient={"birthDate": "1946-06-01", "deceasedDateTime": "1989-03-03T23:30:00+00:00"},
    )  # fmt: skip
    token = staff_token(client, registered_gp)
    summary = page(client, registered_gp, sent.patient)
    banner = words(summary[: summary.index("</dl>")])
    assert "Died 3 Mar 1989 (aged 42)" in banner
    assert " years)" not in banner  # no age as if alive
    medications = block(summary, "medications")
    assert "Medications still marked current" in medications
    assert "This person has died" in medications
    assert "Digoxin" in medications
    section = words(page(client, registered_gp, sent.patient, "medications"))
    assert "This person has died" in section
    person = fhir_get(client, token, f"Patient/{sent.patient.public_id}").json_body
    source = Entry.objects.get(patient=sent.patient, resource_type="Patient").resource
    assert person["deceasedDateTime"] == source["deceasedDateTime"]  # as the source sent it
    assert datetime.datetime.fromisoformat(person["deceasedDateTime"]) == datetime.datetime(
        1989, 3, 3, 23, 30, tzinfo=datetime.UTC
    )
    assert "deceasedBoolean" not in person


def test_a_dead_persons_see_all_link_never_calls_their_medicines_current(
    client: Client, registered_gp
) -> None:
    # The link's words for a screen reader repeated the heading a living person has.
    medicines = [
        {"resourceType": "MedicationStatement", "status": "active",
         "medicationCodeableConcept": {"text": f"Medicine {n} tablets"},
         "effectiveDateTime": f"1988-11-0{n}"}
        for n in range(1, SUMMARY_CURRENT + 2)
    ]  # fmt: skip
    sent = probe(*medicines, patient={"deceasedDateTime": "1989-03-03T23:30:00+00:00"})
    medications = words(block(page(client, registered_gp, sent.patient), "medications"))
    assert f"See all {SUMMARY_CURRENT + 1} medications still marked current" in medications
    assert "current medications" not in medications.lower()


def test_finding_07_a_partial_date_of_death_gives_the_ages_it_allows(
    client: Client, registered_gp
) -> None:
    sent = probe(patient={"birthDate": "1946-06-01", "deceasedDateTime": "1989"})
    token = staff_token(client, registered_gp)
    banner = page(client, registered_gp, sent.patient)
    assert "Died 1989 (aged 42 or 43)" in words(banner)
    person = fhir_get(client, token, f"Patient/{sent.patient.public_id}").json_body
    assert person["deceasedDateTime"] == "1989"


def test_finding_08_partial_dates_keep_their_precision(client: Client, registered_gp) -> None:
    sent = probe(
        {**condition("Hypothyroidism", "40930008"), "onsetDateTime": "2015"},
        {**condition("Gout", "90560007"), "onsetDateTime": "2016-03"},
        {"resourceType": "Immunization", "status": "completed",
         "vaccineCode": {"text": "Tetanus vaccine"}, "occurrenceDateTime": "2019-10"},
    )  # fmt: skip
    thyroid, gout = sent.entry("condition-1"), sent.entry("condition-2")
    for section in ("", "problems"):
        markup = page(client, registered_gp, sent.patient, section)
        assert row(markup, thyroid).startswith("Hypothyroidism")
        assert "Onset: 2015 " in row(markup, thyroid) + " "
        assert "1 Jan 2015" not in row(markup, thyroid)
        assert "Onset: Mar 2016" in row(markup, gout)
        assert "1 Mar 2016" not in row(markup, gout)
    vaccines = page(client, registered_gp, sent.patient, "immunisations")
    assert "Tetanus vaccine Oct 2019" in row(vaccines, sent.entry("immunization-3"))
    assert "1 Oct 2019" not in vaccines


def test_finding_09_an_alert_whose_period_ended_is_not_current(
    client: Client, registered_gp
) -> None:
    sent = probe(
        {"resourceType": "Flag", "status": "active", "code": {"text": "Violent behaviour"},
         "period": {"start": "2020-01-01", "end": "2021-01-01"}},
        {"resourceType": "Flag", "status": "active", "code": {"text": "Hearing impaired"},
         "period": {"start": "2020-01-01"}},
    )  # fmt: skip
    ended, current = sent.entry("flag-1"), sent.entry("flag-2")
    summary = page(client, registered_gp, sent.patient)
    alerts = block(summary, "alerts")
    assert "Violent behaviour" not in alerts
    assert "Hearing impaired" in alerts
    section = page(client, registered_gp, sent.patient, "alerts")
    assert "Violent behaviour Ended 1 Jan 2021" in row(section, ended)
    assert "Ended" not in row(section, current)


def test_finding_10_encounter_times_are_shown_in_uk_time(client: Client, registered_gp) -> None:
    sent = probe(
        {"resourceType": "Encounter", "status": "finished", "class": {"code": "EMER"},
         "type": [{"text": "Summer attendance"}],
         "period": {"start": "2024-07-01T09:00:00+00:00", "end": "2024-07-01T13:30:00Z"}},
        {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
         "type": [{"text": "Winter attendance"}],
         "period": {"start": "2024-01-15T08:00:00-05:00", "end": "2024-01-15T09:45:00-05:00"}},
    )  # fmt: skip
    summer, winter = sent.entry("encounter-1"), sent.entry("encounter-2")
    markup = page(client, registered_gp, sent.patient, "encounters")
    assert "Ended: 1 Jul 2024 14:30" in row(markup, summer)  # BST
    assert "1 Jul 2024 10:00" in row(markup, summer)
    assert "Ended: 15 Jan 2024 14:45" in row(markup, winter)  # GMT
    assert "15 Jan 2024 13:00" in row(markup, winter)
    # The summary says a visit that ends the day it starts on one line.
    summary = page(client, registered_gp, sent.patient)
    assert "When 1 Jul 2024 10:00 to 14:30" in row(summary, summer)
    assert "When 15 Jan 2024 13:00 to 14:45" in row(summary, winter)


def test_finding_11_resolved_problems_show_resolution_and_care_plans_their_content(
    client: Client, registered_gp
) -> None:
    sent = probe(
        {**condition("Fracture of radius", "263225007", clinical="resolved"),
         "abatementDateTime": "2018-05-02"},
        {"resourceType": "CarePlan", "status": "active", "intent": "plan",
         "category": [cc(SNOMED, "698360004", "Diabetes self management plan")],
         "period": {"start": "2023-02-01"},
         "activity": [
             {"detail": {"code": cc(SNOMED, "160670007", "Diabetic diet"),
                         "status": "in-progress"}},
             {"detail": {"code": cc(SNOMED, "229065009", "Exercise therapy"),
                         "status": "scheduled"}},
         ]},
    )  # fmt: skip
    fracture, plan = sent.entry("condition-1"), sent.entry("careplan-2")
    problems = page(client, registered_gp, sent.patient, "problems")
    shown = row(problems, fracture)
    assert "Fracture of radius Resolved" in shown
    assert "Resolved: 2 May 2018" in shown
    shown = row(page(client, registered_gp, sent.patient, "care-plans"), plan)
    assert shown.startswith("Diabetes self management plan")
    assert "Period: from 1 Feb 2023" in shown
    assert "Activity: Diabetic diet (in progress)" in shown
    assert "Activity: Exercise therapy (scheduled)" in shown
    # The summary names the plan and its period, and links to its content.
    summary = page(client, registered_gp, sent.patient)
    assert row(summary, plan).startswith("Diabetes self management plan")
    assert "Period: from 1 Feb 2023" in row(summary, plan)
    assert "Open care plans" in block(summary, "care-plans")


def test_finding_12_a_report_shows_its_conclusion_and_linked_results(
    client: Client, registered_gp
) -> None:
    haemoglobin = observation("Haemoglobin", valueQuantity={"value": 96, "unit": "g/L"},
                              referenceRange=[{"low": {"value": 115, "unit": "g/L"},
                                               "high": {"value": 165, "unit": "g/L"}}])  # fmt: skip
    platelets = observation("Platelets", valueQuantity={"value": 250, "unit": "10*9/L"})
    report = {
        "resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Full blood count"},
        "effectiveDateTime": "2025-06-01T09:30:00+01:00",
        "conclusion": "Iron deficiency anaemia likely.",
    }  # fmt: skip
    bundle, urls = bundle_for(
        [haemoglobin, platelets, report], number=next_nhs_number(), ods="Z81001", patient=None
    )
    # The report names its results, and one result its sender never sent.
    ids = [bundle["entry"][n]["resource"]["id"] for n in (1, 2)]
    bundle["entry"][3]["resource"]["result"] = [
        {"reference": f"Observation/{ids[0]}"}, {"reference": f"Observation/{ids[1]}"},
        {"reference": "Observation/not-sent", "display": "Ferritin"},
    ]  # fmt: skip
    first = Probe(send(bundle), urls)
    entry = first.entry("diagnosticreport-3")
    for section in ("", "results"):
        markup = page(client, registered_gp, first.patient, section)
        shown = row(markup, entry)
        assert "Conclusion: Iron deficiency anaemia likely." in shown
        assert "Haemoglobin: 96 g/L (outside range)" in shown
        assert "Platelets: 250 10*9/L" in shown
        assert "Linked result, not shown here: Ferritin" in shown
    # The results shown on the report's row are named in the audit event.
    event = AuditEvent.objects.filter(action=AuditAction.SECTION_VIEW).latest("id")
    linked = {str(first.entry(f"observation-{n}").public_id) for n in (1, 2)}
    assert linked <= set(event.detail["entries"])


def test_finding_13_source_quality_is_said_in_words(client: Client, registered_gp) -> None:
    sent = probe(
        observation("Random blood glucose", valueQuantity={"value": 7}),
        observation("Body height", valueQuantity={
            "value": 174.09997327938322, "unit": "cm", "system": UCUM, "code": "cm"}),
        {"resourceType": "Immunization", "status": "not-done",
         "statusReason": cc("http://terminology.hl7.org/CodeSystem/v3-ActReason", "PATOBJ",
                            "patient objection"),
         "vaccineCode": {"text": "Influenza vaccine"}, "occurrenceDateTime": "2025-10-01"},
        {"resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"},
         "type": [{"text": "Inpatient stay"}],
         "period": {"start": "2025-03-01T10:00:00Z", "end": "2025-03-04T12:00:00Z"},
         "hospitalization": {"dischargeDisposition": cc(SNOMED, "306689006",
                                                        "Discharge to home")}},
    )  # fmt: skip
    results = page(client, registered_gp, sent.patient, "results")
    assert "Result: 7 (no unit given)" in row(results, sent.entry("observation-1"))
    height = row(results, sent.entry("observation-2"))
    assert "Result: 174.09997327938322 cm (sent with 14 decimal places)" in height
    vaccines = page(client, registered_gp, sent.patient, "immunisations")
    shown = row(vaccines, sent.entry("immunization-3"))
    assert "Influenza vaccine Not done" in shown
    assert "Not given because: patient objection" in shown
    encounters = page(client, registered_gp, sent.patient, "encounters")
    assert "Discharged to: Discharge to home" in row(encounters, sent.entry("encounter-4"))


def test_the_api_returns_every_probe_as_the_source_sent_it(client: Client, registered_gp) -> None:
    sent = probe(
        condition("Acute appendicitis", "85189001", verification="refuted"),
        observation("Pregnancy test", valueBoolean=True),
        {"resourceType": "Flag", "status": "active", "code": {"text": "Violent behaviour"},
         "period": {"start": "2020-01-01", "end": "2021-01-01"}},
    )  # fmt: skip
    token = staff_token(client, registered_gp)
    for name in ("condition-1", "observation-2", "flag-3"):
        entry = sent.entry(name)
        assert exact(as_sent(api_resource(client, token, entry))) == exact(as_sent(entry.resource))
