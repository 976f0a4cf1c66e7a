"""Synthetic feeds for the demo borough: FHIR R4 Bundles as each organisation would send them.

Every person here is invented. NHS numbers are from the 999 range, which is
never issued to a real person; ODS codes are the demo's made-up Z codes.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nhs_number as nhs

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
DMD = "https://dmd.nhs.uk"


def synthetic_nhs_number(serial: int) -> str:
    """The serial-th valid NHS number in the never-issued 999 range."""
    candidate = serial
    while True:
        digits = f"999{candidate:06d}"
        check = nhs.calculate_checksum(digits)
        if check is not None and check < 10 and candidate >= serial:
            return digits + str(check)
        candidate += 1


@dataclass(frozen=True)
class DemoPerson:
    key: str
    serial: int
    given: str
    family: str
    birth_date: str
    gender: str
    postcode: str
    line: str
    gp_ods: str
    nhs_number_sent: str = ""  # what the feed carries, if not this person's synthetic number

    @property
    def nhs_number(self) -> str:
        return self.nhs_number_sent or synthetic_nhs_number(self.serial)


PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson(
        "p1", 1, "Margaret", "Ellison", "1941-03-14", "female", "ZZ1 1AA", "4 Mill Lane", "Z81001"
    ),
    DemoPerson(
        "p2", 2, "Joseph", "Okonkwo", "1958-11-02", "male", "ZZ1 2BB", "17 Station Road", "Z81001"
    ),
    DemoPerson(
        "p3",
        3,
        "Aisha",
        "Rahman",
        "1987-06-21",
        "female",
        "ZZ2 3CC",
        "Flat 2, 9 Park View",
        "Z81002",
    ),
    DemoPerson(
        "p4", 4, "Thomas", "Byrne", "1936-09-30", "male", "ZZ2 4DD", "22 Church Street", "Z81002"
    ),
    DemoPerson(
        "p5",
        5,
        "Chloe",
        "Fernandes",
        "2016-01-08",
        "female",
        "ZZ3 5EE",
        "8 Orchard Close",
        "Z81003",
    ),
    DemoPerson(
        "p6", 6, "Dennis", "Walsh", "1972-04-17", "male", "ZZ3 6FF", "51 Canal Street", "Z81003"
    ),
)


def _ago(days: int, hour: int = 10) -> str:
    moment = datetime.datetime.now(datetime.UTC).replace(
        hour=hour, minute=0, second=0, microsecond=0
    )
    return (moment - datetime.timedelta(days=days)).isoformat()


def _ahead(days: int, hour: int = 10) -> str:
    return _ago(-days, hour)


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


class BundleBuilder:
    """One organisation's Bundle about one person, with stable ids (re-sends are idempotent)."""

    def __init__(self, person: DemoPerson, ods: str, tag: str) -> None:
        self.person, self.ods, self.tag = person, ods, tag
        self.entries: list[dict[str, Any]] = []
        self.patient_url = f"urn:uuid:{self._uuid('patient')}"
        self.count = 0

    def _uuid(self, name: str) -> str:
        import uuid

        return str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"demo/{self.ods}/{self.person.key}/{self.tag}/{name}")
        )

    def _bundle_id(self) -> str:
        import uuid

        # Dates in the demo are relative to today, so each day's feed is a new message.
        today = datetime.date.today().isoformat()
        return str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"demo/{self.ods}/{self.person.key}/{self.tag}/{today}")
        )

    def _id(self, kind: str) -> str:
        self.count += 1
        return f"{self.person.key}-{self.tag}-{kind.lower()}-{self.count}"

    def patient(self) -> BundleBuilder:
        p = self.person
        resource = {
            "resourceType": "Patient",
            "id": f"{p.key}-{self.ods.lower()}",
            "meta": {"lastUpdated": _ago(1)},
            "identifier": [{"system": NHS, "value": p.nhs_number}],
            "name": [{"use": "official", "family": p.family, "given": [p.given]}],
            "gender": p.gender,
            "birthDate": p.birth_date,
            "address": [
                {"use": "home", "line": [p.line], "city": "Borough Town", "postalCode": p.postcode}
            ],
            "generalPractitioner": [{"identifier": {"system": ODS, "value": p.gp_ods}}],
        }
        self.entries.append({"fullUrl": self.patient_url, "resource": resource})
        return self

    def add(
        self, resource_type: str, body: dict[str, Any], subject_field: str = "subject"
    ) -> BundleBuilder:
        resource = {"resourceType": resource_type, "id": self._id(resource_type), **body}
        if subject_field:
            resource[subject_field] = {"reference": self.patient_url}
        self.entries.append(
            {"fullUrl": f"urn:uuid:{self._uuid(resource['id'])}", "resource": resource}
        )
        return self

    def bundle(self) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "id": self._bundle_id(),
            "type": "collection",
            "entry": self.entries,
        }


# ------------------------------------------------------------------ the people's own care
# Each demo person's GP record fits them: their age, their conditions, the medicines and
# results those conditions bring. Margaret Ellison (serial 1) keeps the record the tests
# read; the others vary, so a walk through the borough shows what real records look like.

CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY = "http://terminology.hl7.org/CodeSystem/consentcategorycodes"


def _allergy(b: BundleBuilder, code: str, display: str, days: int) -> None:
    b.add(
        "AllergyIntolerance",
        {"clinicalStatus": _cc(ALLERGY_CLINICAL, "active", "Active"),
         "code": _cc(SNOMED, code, display), "recordedDate": _ago(days)},
        "patient",
    )  # fmt: skip


def _problem(b: BundleBuilder, code: str, display: str, days: int, resolved: int = 0) -> None:
    status = ("resolved", "Resolved") if resolved else ("active", "Active")
    body: dict[str, Any] = {
        "clinicalStatus": _cc(CLINICAL, *status),
        "code": _cc(SNOMED, code, display),
        "onsetDateTime": _ago(days),
    }
    if resolved:
        body["abatementDateTime"] = _ago(resolved)
    b.add("Condition", body)


def _medicine(
    b: BundleBuilder, name: str, dose: str, days: int, course: str = "continuous"
) -> None:
    b.add(
        "MedicationRequest",
        {"status": "active", "intent": "order", "medicationCodeableConcept": {"text": name},
         "authoredOn": _ago(days), "dosageInstruction": [{"text": dose}],
         "courseOfTherapyType": _cc(
             "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy",
             course, "Continuous long term therapy" if course == "continuous" else "Short course",
         )},
    )  # fmt: skip


def _results(
    b: BundleBuilder,
    code: str,
    display: str,
    unit: str,
    low: float,
    high: float,
    series: tuple[tuple[int, float], ...],
) -> None:
    for days, value in series:
        outside = value < low or value > high
        b.add(
            "Observation",
            {"status": "final", "code": _cc(LOINC, code, display),
             "effectiveDateTime": _ago(days),
             "valueQuantity": {"value": value, "unit": unit},
             "referenceRange": [{"low": {"value": low, "unit": unit},
                                 "high": {"value": high, "unit": unit}}],
             **({"interpretation": [_cc(INTERPRETATION, "H" if value > high else "L",
                                        "High" if value > high else "Low")]}
                if outside else {})},
        )  # fmt: skip


def _copd(b: BundleBuilder) -> None:
    """Joseph Okonkwo, 68: COPD and raised cholesterol; inhalers and a statin."""
    b.add(
        "AllergyIntolerance",
        {"code": _cc(SNOMED, "716186003", "No known allergy"), "recordedDate": _ago(1200)},
        "patient",
    )
    _problem(b, "13645005", "Chronic obstructive lung disease", 2600)
    _problem(b, "13644009", "Hypercholesterolaemia", 1900)
    _medicine(b, "Tiotropium 2.5micrograms/dose inhaler", "Two puffs once a day", 2500)
    _medicine(b, "Salbutamol 100micrograms/dose inhaler", "One to two puffs when needed", 2500)
    _medicine(b, "Atorvastatin 20mg tablets", "One tablet at night", 1800)
    _results(b, "2093-3", "Total cholesterol", "mmol/L", 0, 5,
             ((700, 6.4), (360, 5.2), (30, 4.6)))  # fmt: skip


def _asthma(b: BundleBuilder) -> None:
    """Aisha Rahman, 39: asthma and a peanut allergy; inhalers, and a past fracture."""
    _allergy(b, "91935009", "Allergy to peanut", 5000)
    _problem(b, "195967001", "Asthma", 9000)
    _prsb_communication(b)
    _problem(b, "263204007", "Fracture of wrist", 1500, resolved=1400)
    _medicine(b, "Beclometasone 100micrograms/dose inhaler", "Two puffs twice a day", 3000)
    _medicine(b, "Salbutamol 100micrograms/dose inhaler", "One to two puffs when needed", 3000)
    _results(b, "19935-6", "Peak expiratory flow", "L/min", 350, 600,
             ((500, 380), (250, 340), (20, 410)))  # fmt: skip


def _frailty(b: BundleBuilder) -> None:
    """Thomas Byrne, 90: atrial fibrillation and heart failure; anticoagulated; DNACPR."""
    _allergy(b, "293586001", "Allergy to aspirin", 8000)
    _problem(b, "49436004", "Atrial fibrillation", 2200)
    _problem(b, "84114007", "Heart failure", 1100)
    _medicine(b, "Apixaban 2.5mg tablets", "One tablet twice a day", 2100)
    _medicine(b, "Furosemide 40mg tablets", "One tablet each morning", 1000)
    _medicine(b, "Bisoprolol 2.5mg tablets", "One tablet each morning", 1000)
    _results(b, "62238-1", "eGFR (CKD-EPI)", "mL/min/1.73m2", 60, 120,
             ((600, 52), (300, 47), (15, 43)))  # fmt: skip
    b.add(
        "Flag",
        {"status": "active", "code": _cc(SNOMED, "304253006", "Not for resuscitation"),
         "period": {"start": _ago(300)}},
    )  # fmt: skip
    _prsb_end_of_life(b)


def _prsb_end_of_life(b: BundleBuilder) -> None:
    """PRSB content (sharedrecord/presentation/prsb.py): contact, about me, legal, ReSPECT."""
    b.entries[0]["resource"]["telecom"] = [
        {"system": "phone", "value": "01632 960 414", "use": "home"},
    ]
    b.add(
        "CarePlan",
        {"status": "active", "intent": "plan", "title": "About me",
         "description": "Likes to be called Tom. Deaf in his left ear: sit on his right. "
                        "Wants to stay at home.",
         "period": {"start": _ago(200)}},
    )  # fmt: skip
    b.add(
        "CarePlan",
        {"status": "active", "intent": "plan",
         "category": [_cc(SNOMED, "1108161000000109", "ReSPECT care plan")],
         "title": "ReSPECT: ward-based care, not for intensive care",
         "description": "Discussed with Thomas and his daughter; review if he asks.",
         "period": {"start": _ago(300)}},
    )  # fmt: skip
    b.add(
        "Consent",
        {"status": "active",
         "scope": _cc(CONSENT_SCOPE, "adr", "Advanced Care Directive"),
         "category": [{"coding": [{"system": CONSENT_CATEGORY, "code": "acd",
                                   "display": "Advance Directive"}],
                       "text": "Advance decision to refuse treatment"}],
         "dateTime": _ago(400),
         "provision": {"type": "deny", "code": [{"text": "Mechanical ventilation"}]}},
        "patient",
    )  # fmt: skip
    b.add(
        "RelatedPerson",
        {"active": True,
         "relationship": [{"text": "Lasting power of attorney for health and welfare"}],
         "name": [{"family": b.person.family, "given": ["Helen"]}],
         "telecom": [{"system": "phone", "value": "07700 900 414", "use": "mobile"}]},
        "patient",
    )  # fmt: skip


def _prsb_communication(b: BundleBuilder) -> None:
    """PRSB communication needs: the person's own phone and e-mail, language, interpreter."""
    b.entries[0]["resource"].update(
        {
            "telecom": [
                {"system": "phone", "value": "07700 900 303", "use": "mobile"},
                {"system": "email", "value": "aisha.rahman@example.org", "use": "home"},
            ],
            "communication": [
                {"language": _cc("urn:ietf:bcp:47", "bn", "Bengali"), "preferred": True},
                {"language": _cc("urn:ietf:bcp:47", "en", "English")},
            ],
            "extension": [
                {"url": "http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired",
                 "valueBoolean": False},
            ],
        }
    )  # fmt: skip


def _child(b: BundleBuilder) -> None:
    """Chloe Fernandes, 10: eczema, an emollient, and her childhood vaccinations."""
    b.add(
        "AllergyIntolerance",
        {"code": _cc(SNOMED, "409137002", "No known drug allergy"), "recordedDate": _ago(2500)},
        "patient",
    )
    _problem(b, "24079001", "Atopic dermatitis", 2800)
    _medicine(b, "Emollient cream", "Apply to dry skin twice a day", 2700)
    _medicine(b, "Hydrocortisone 1% cream", "Apply thinly once a day for 7 days", 60, "acute")
    b.add(
        "Immunization",
        {"status": "completed", "vaccineCode": _cc(SNOMED, "871831003",
                                                   "Measles, mumps and rubella vaccine"),
         "occurrenceDateTime": _ago(3300)},
        "patient",
    )  # fmt: skip


def _blood_pressure(b: BundleBuilder) -> None:
    """Dennis Walsh, 54: hypertension and knee osteoarthritis; amlodipine and pain relief."""
    _allergy(b, "91936005", "Allergy to penicillin", 6000)
    _problem(b, "38341003", "Hypertensive disorder", 1500)
    _problem(b, "239873007", "Osteoarthritis of knee", 900)
    _medicine(b, "Amlodipine 5mg tablets", "One tablet each morning", 1400)
    _medicine(b, "Paracetamol 500mg tablets", "Two tablets up to four times a day", 800)
    _results(b, "718-7", "Haemoglobin", "g/L", 130, 180, ((400, 142), (35, 138)))


PROFILES: dict[int, Callable[[BundleBuilder], None]] = {
    2: _copd, 3: _asthma, 4: _frailty, 5: _child, 6: _blood_pressure,
}  # fmt: skip


def _diabetes_and_hypertension(b: BundleBuilder) -> None:
    """Type 2 diabetes and hypertension, on metformin and ramipril, with HbA1c results."""
    b.add(
        "AllergyIntolerance",
        {
            "clinicalStatus": _cc(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                "active",
                "Active",
            ),
            "verificationStatus": _cc(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                "confirmed",
                "Confirmed",
            ),
            "code": _cc(SNOMED, "91936005", "Allergy to penicillin"),
            "reaction": [
                {
                    "manifestation": [_cc(SNOMED, "271807003", "Eruption of skin")],
                    "severity": "moderate",
                }
            ],
            "recordedDate": _ago(2400),
        },
        "patient",
    )
    b.add(
        "Condition",
        {
            "clinicalStatus": _cc(
                "http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"
            ),
            "code": _cc(SNOMED, "44054006", "Type 2 diabetes mellitus"),
            "onsetDateTime": _ago(3100),
        },
    )
    b.add(
        "Condition",
        {
            "clinicalStatus": _cc(
                "http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"
            ),
            "code": _cc(SNOMED, "38341003", "Hypertensive disorder"),
            "onsetDateTime": _ago(4000),
        },
    )
    b.add(
        "MedicationStatement",
        {
            "status": "active",
            "medicationCodeableConcept": _cc(DMD, "325242002", "Metformin 500mg tablets"),
            "effectivePeriod": {"start": _ago(3000)},
            "dosage": [{"text": "One tablet twice a day with food"}],
        },
    )
    b.add(
        "MedicationStatement",
        {
            "status": "active",
            "medicationCodeableConcept": _cc(DMD, "318820006", "Ramipril 5mg capsules"),
            "effectivePeriod": {"start": _ago(3900)},
            "dosage": [{"text": "One capsule each morning"}],
        },
    )
    for days, value in ((400, 58), (220, 54), (40, 49)):
        b.add(
            "Observation",
            {
                "status": "final",
                "category": [
                    _cc(
                        "http://terminology.hl7.org/CodeSystem/observation-category",
                        "laboratory",
                        "Laboratory",
                    )
                ],
                "code": _cc(SNOMED, "1049301000000100", "HbA1c level (IFCC standardised)"),
                "effectiveDateTime": _ago(days),
                "valueQuantity": {
                    "value": value,
                    "unit": "mmol/mol",
                    "system": "http://unitsofmeasure.org",
                    "code": "mmol/mol",
                },
                "referenceRange": [
                    {
                        "low": {"value": 20, "unit": "mmol/mol"},
                        "high": {"value": 48, "unit": "mmol/mol"},
                    }
                ],
                "interpretation": [
                    _cc(
                        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "H",
                        "High",
                    )
                ]
                if value > 48
                else [],
            }
            if value > 48
            else {
                "status": "final",
                "code": _cc(SNOMED, "1049301000000100", "HbA1c level (IFCC standardised)"),
                "effectiveDateTime": _ago(days),
                "valueQuantity": {
                    "value": value,
                    "unit": "mmol/mol",
                    "system": "http://unitsofmeasure.org",
                    "code": "mmol/mol",
                },
            },
        )


def gp_summary(person: DemoPerson) -> dict[str, Any]:
    b = BundleBuilder(person, person.gp_ods, "gp").patient()
    PROFILES.get(b.person.serial, _diabetes_and_hypertension)(b)
    b.add(
        "Immunization",
        {
            "status": "completed",
            "vaccineCode": _cc(SNOMED, "1119349007", "Influenza vaccine"),
            "occurrenceDateTime": _ago(60),
        },
        "patient",
    )
    b.add(
        "Encounter",
        {
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
                "display": "ambulatory",
            },
            "type": [_cc(SNOMED, "185317003", "Telephone encounter")],
            "period": {"start": _ago(12), "end": _ago(12, 11)},
        },
    )
    return b.bundle()


def acute_attendance(person: DemoPerson) -> dict[str, Any]:
    b = BundleBuilder(person, "ZAC01", "ed").patient()
    b.add(
        "Encounter",
        {
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "EMER",
                "display": "emergency",
            },
            "type": [_cc(SNOMED, "50849002", "Emergency department patient visit")],
            "period": {"start": _ago(20, 2), "end": _ago(20, 7)},
            "reasonCode": [_cc(SNOMED, "29857009", "Chest pain")],
        },
    )
    b.add(
        "Observation",
        {
            "status": "final",
            "code": _cc(SNOMED, "1000731000000107", "Serum troponin T level"),
            "effectiveDateTime": _ago(20, 3),
            "valueQuantity": {
                "value": 9,
                "unit": "ng/L",
                "system": "http://unitsofmeasure.org",
                "code": "ng/L",
            },
            "referenceRange": [{"high": {"value": 14, "unit": "ng/L"}}],
        },
    )
    b.add(
        "DocumentReference",
        {
            "status": "current",
            "type": _cc(SNOMED, "823701000000103", "Discharge letter"),
            "date": _ago(20, 8),
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "title": "ED discharge summary",
                        "data": base64.b64encode(
                            b"ED attendance for chest pain. Troponin normal. "
                            b"Discharged home with GP follow-up."
                        ).decode(),
                    }
                }
            ],
        },
    )
    return b.bundle()


def community_care(person: DemoPerson) -> dict[str, Any]:
    b = BundleBuilder(person, "ZCM01", "dn").patient()
    b.add(
        "CarePlan",
        {
            "status": "active",
            "intent": "plan",
            "title": "District nursing: leg ulcer care",
            "description": "Dressing changes twice weekly; review healing every 4 weeks.",
            "period": {"start": _ago(30)},
        },
    )
    b.add(
        "Appointment",
        {
            "status": "booked",
            "serviceType": [_cc(SNOMED, "310070003", "District nurse service")],
            "start": _ahead(3),
            "end": _ahead(3, 11),
            "participant": [{"actor": {"reference": b.patient_url}, "status": "accepted"}],
        },
        "",
    )
    b.add(
        "CareTeam",
        {
            "status": "active",
            "name": "Borough North district nursing team",
            "participant": [
                {
                    "role": [_cc(SNOMED, "224535009", "Registered nurse")],
                    "member": {"display": "Siobhan Kelly"},
                }
            ],
        },
    )
    return b.bundle()


def social_care(person: DemoPerson) -> dict[str, Any]:
    b = BundleBuilder(person, "ZSC01", "asc").patient()
    b.add(
        "RelatedPerson",
        {
            "active": True,
            "relationship": [
                _cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "DAU", "daughter")
            ],
            "name": [{"family": person.family, "given": ["Sarah"]}],
            "telecom": [{"system": "phone", "value": "07700 900123", "use": "mobile"}],
        },
        "patient",
    )
    b.add(
        "CarePlan",
        {
            "status": "active",
            "intent": "plan",
            "title": "Home care package",
            "description": (
                "Two visits a day for personal care; key safe code held by the care agency."
            ),
            "period": {"start": _ago(90)},
        },
    )
    b.add(
        "Flag",
        {
            "status": "active",
            "code": _cc(SNOMED, "1240741000000107", "Lives alone"),
            "period": {"start": _ago(90)},
        },
    )
    return b.bundle()


def mental_health(person: DemoPerson) -> dict[str, Any]:
    b = BundleBuilder(person, "ZMH01", "mh").patient()
    b.add(
        "Condition",
        {
            "meta": {
                "security": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "R",
                        "display": "restricted",
                    }
                ]
            },
            "clinicalStatus": _cc(
                "http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"
            ),
            "code": _cc(SNOMED, "35489007", "Depressive disorder"),
            "onsetDateTime": _ago(700),
        },
    )
    return b.bundle()


def registration(person: DemoPerson) -> dict[str, Any]:
    """The demographics service's Patient: the authority on the registered GP practice."""
    return BundleBuilder(person, "ZDS01", "pds").patient().bundle()


def demo_feeds() -> list[tuple[str, dict[str, Any]]]:
    """(sending ODS code, Bundle) for every demo feed, in the order they are sent."""
    feeds: list[tuple[str, dict[str, Any]]] = []
    for person in PEOPLE:
        feeds.append(("ZDS01", registration(person)))
        feeds.append((person.gp_ods, gp_summary(person)))
    for person in PEOPLE[:4]:
        feeds.append(("ZAC01", acute_attendance(person)))
    for person in (PEOPLE[0], PEOPLE[3]):
        feeds.append(("ZCM01", community_care(person)))
        feeds.append(("ZSC01", social_care(person)))
    feeds.append(("ZMH01", mental_health(PEOPLE[5])))
    return feeds
