"""What the record takes from FHIR R4: namespaces, Bundle and resource types, and where
each type keeps its patient, date, code and status.
"""

from __future__ import annotations

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_NS = "http://hl7.org/fhir"
BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "message"})

# Resource type -> (record section, where the patient is referenced).
SUPPORTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "Patient": ("demographics", ()),
    "AllergyIntolerance": ("allergies", ("patient",)),
    "MedicationStatement": ("medications", ("subject",)),
    "MedicationRequest": ("medications", ("subject",)),
    "Condition": ("problems", ("subject",)),
    "Observation": ("results", ("subject",)),
    "DiagnosticReport": ("results", ("subject",)),
    "Encounter": ("encounters", ("subject",)),
    "Procedure": ("procedures", ("subject",)),
    "Immunization": ("immunisations", ("patient",)),
    "CarePlan": ("care-plans", ("subject",)),
    "DocumentReference": ("documents", ("subject",)),
    "ServiceRequest": ("referrals", ("subject",)),
    "Appointment": ("appointments", ("participant[].actor",)),
    "Flag": ("alerts", ("subject",)),
    "RelatedPerson": ("contacts", ("patient",)),
    "CareTeam": ("contacts", ("subject",)),
    # Advance decisions, lasting powers of attorney, DNACPR: the PRSB "Legal information"
    # (sharedrecord/presentation/prsb.py), governed with the care plans.
    "Consent": ("care-plans", ("patient",)),
}
# Envelope resources that travel with a message but are not part of a record.
ENVELOPE_TYPES = frozenset({"MessageHeader"})

# Where each type keeps its clinically meaningful date, first match wins.
EFFECTIVE_PATHS: dict[str, tuple[str, ...]] = {
    "AllergyIntolerance": ("onsetDateTime", "recordedDate"),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
    "MedicationRequest": ("authoredOn",),
    "Condition": ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "Encounter": ("period.start",),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "Immunization": ("occurrenceDateTime", "recorded"),
    "CarePlan": ("period.start", "created"),
    "DocumentReference": ("date", "context.period.start"),
    "ServiceRequest": ("occurrenceDateTime", "authoredOn"),
    "Appointment": ("start", "created"),
    "Flag": ("period.start",),
    "CareTeam": ("period.start",),
    "RelatedPerson": ("period.start",),
    "Consent": ("dateTime", "provision.period.start"),
}
CODE_PATHS: dict[str, tuple[str, ...]] = {
    "MedicationStatement": ("medicationCodeableConcept",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "Immunization": ("vaccineCode",),
    "Encounter": ("type[0]", "class"),
    "DocumentReference": ("type",),
    "Appointment": ("serviceType[0]", "appointmentType"),
    "CareTeam": ("category[0]",),
    "RelatedPerson": ("relationship[0]",),
    "Consent": ("category[0]",),
}
STATUS_PATHS = ("clinicalStatus", "status")
XHTML_NS = "http://www.w3.org/1999/xhtml"
