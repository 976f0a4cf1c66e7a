"""Which elements each FHIR type shows, in which section, with which label; and its qualifiers.

The table is the presentation's contract with clinical safety: an element
that a clinician needs and that is not listed here is not shown. Each row
names a top-level element (or a dotted path, or a choice prefix such as
"onset" for onset[x]) and how it is rendered (entries.RENDERERS). The
hazard log's controls test it; a new element goes here, with a test.

Qualifiers are the words that change what an item means (refuted,
provisional, entered in error, not done, completed, stopped, inactive,
resolved, ...). They are always shown beside the item's title, whatever
the section, so "listed" never silently reads as "true" or "current".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shows:
    """One element a type shows: its label, where it is, and how to render it."""

    label: str
    path: str
    kind: str


@dataclass(frozen=True)
class TypeView:
    section: str
    title: tuple[str, ...]  # elements tried, in order, for the item's title
    when: tuple[str, ...]  # the item's date, first found (ingestion's EFFECTIVE_PATHS)
    shows: tuple[Shows, ...]
    fallback_title: str
    quiet: frozenset[str] = frozenset()  # statuses that are the ordinary state: no qualifier


NOTE = Shows("Note", "note", "notes")
REASON_REFERENCE = Shows("Reason", "reasonReference", "references")

TYPES: dict[str, TypeView] = {
    "Patient": TypeView(
        "demographics", ("name",), (),
        (Shows("Born", "birthDate", "date"), Shows("Sex", "gender", "code"),
         Shows("Died", "deceased", "choice"), Shows("Address", "address", "addresses"),
         Shows("Contact", "telecom", "telecom")),
        "Person",
    ),
    "AllergyIntolerance": TypeView(
        "allergies", ("code",), ("onsetDateTime", "recordedDate"),
        (Shows("Criticality", "criticality", "code"), Shows("Type", "type", "code"),
         Shows("Category", "category", "codes"), Shows("Reaction", "reaction", "reactions"),
         Shows("Onset", "onset", "choice"), Shows("Recorded", "recordedDate", "date"),
         Shows("Last occurrence", "lastOccurrence", "date"), NOTE),
        "Allergy or adverse reaction", frozenset({"active", "confirmed"}),
    ),
    "Condition": TypeView(
        "problems", ("code",), ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
        (Shows("Onset", "onset", "choice"), Shows("Resolved", "abatement", "choice"),
         Shows("Severity", "severity", "concept"), Shows("Category", "category", "concepts"),
         Shows("Stage", "stage", "stages"), Shows("Body site", "bodySite", "concepts"),
         Shows("Recorded", "recordedDate", "date"), NOTE),
        "Problem", frozenset({"active", "confirmed"}),
    ),
    "MedicationStatement": TypeView(
        "medications", ("medicationCodeableConcept", "medicationReference"),
        ("effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
        (Shows("Dose", "dosage", "dosage"), Shows("Taken", "effective", "choice"),
         Shows("Last issued", "extension", "last_issued"),
         Shows("Status reason", "statusReason", "concepts"),
         Shows("Reason", "reasonCode", "concepts"), REASON_REFERENCE,
         Shows("Category", "category", "concept"), Shows("Asserted", "dateAsserted", "date"), NOTE),
        "Medication", frozenset({"active"}),
    ),
    "MedicationRequest": TypeView(
        "medications", ("medicationCodeableConcept", "medicationReference"), ("authoredOn",),
        (Shows("Dose", "dosageInstruction", "dosage"), Shows("Intent", "intent", "code"),
         Shows("Status reason", "statusReason", "concept"),
         Shows("Reason", "reasonCode", "concepts"), REASON_REFERENCE,
         Shows("Supply", "dispenseRequest", "supply"),
         Shows("Repeat or acute", "courseOfTherapyType", "course"),
         Shows("Issued", "extension", "repeat_information"),
         Shows("Prescribed", "authoredOn", "date"), NOTE),
        "Medication", frozenset({"active"}),
    ),
    "Observation": TypeView(
        "results", ("code",),
        ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"),
        (Shows("Result", "value", "result"), Shows("Component", "component", "components"),
         Shows("Reference range", "referenceRange", "ranges"),
         Shows("Interpretation", "interpretation", "concepts"),
         Shows("Taken", "effectivePeriod", "period"), Shows("Method", "method", "concept"),
         Shows("Body site", "bodySite", "concept"), Shows("Linked result", "hasMember", "linked"),
         NOTE),
        "Result", frozenset({"final"}),
    ),
    "DiagnosticReport": TypeView(
        "results", ("code",), ("effectiveDateTime", "effectivePeriod.start", "issued"),
        (Shows("Conclusion", "conclusion", "string"),
         Shows("Coded conclusion", "conclusionCode", "concepts"),
         Shows("Linked result", "result", "linked"), Shows("Category", "category", "concepts"),
         Shows("Period", "effectivePeriod", "period"), Shows("Issued", "issued", "date")),
        "Report", frozenset({"final"}),
    ),
    "Encounter": TypeView(
        "encounters", ("type", "serviceType"), ("period.start",),
        (Shows("Setting", "class", "setting"), Shows("Reason", "reasonCode", "concepts"),
         Shows("Reason", "reasonReference", "references"),
         Shows("Diagnosis", "diagnosis", "diagnoses"), Shows("Ended", "period.end", "date"),
         Shows("Length", "length", "quantity"),
         Shows("Admitted from", "hospitalization.admitSource", "concept"),
         Shows("Discharged to", "hospitalization.dischargeDisposition", "concept"),
         Shows("Where", "location", "locations"),
         Shows("Service provider", "serviceProvider", "reference")),
        "Encounter", frozenset({"finished"}),
    ),
    "Procedure": TypeView(
        "procedures", ("code",), ("performedDateTime", "performedPeriod.start"),
        (Shows("Performed", "performed", "choice"),
         Shows("Not done because", "statusReason", "concept"),
         Shows("Reason", "reasonCode", "concepts"), REASON_REFERENCE,
         Shows("Outcome", "outcome", "concept"), Shows("Body site", "bodySite", "concepts"),
         Shows("Complication", "complication", "concepts"),
         Shows("Follow-up", "followUp", "concepts"), NOTE),
        "Procedure", frozenset({"completed"}),
    ),
    "Immunization": TypeView(
        "immunisations", ("vaccineCode",), ("occurrenceDateTime", "recorded"),
        (Shows("Not given because", "statusReason", "concept"),
         Shows("Given", "occurrenceString", "string"), Shows("Dose", "doseQuantity", "quantity"),
         Shows("Route", "route", "concept"), Shows("Site", "site", "concept"),
         Shows("Batch", "lotNumber", "string"), Shows("Expiry", "expirationDate", "date"),
         Shows("Dose number", "protocolApplied", "protocol"),
         Shows("Reason", "reasonCode", "concepts"),
         Shows("Source", "primarySource", "primary_source"),
         Shows("Reaction", "reaction", "immunisation_reactions"), NOTE),
        "Immunisation", frozenset({"completed"}),
    ),
    "CarePlan": TypeView(
        "care-plans", ("title", "category", "description"), ("period.start", "created"),
        (Shows("Category", "category", "concepts"), Shows("Plan", "description", "string"),
         Shows("Period", "period", "period"), Shows("Intent", "intent", "code"),
         Shows("Addresses", "addresses", "references"), Shows("Activity", "activity", "activities"),
         Shows("Goal", "goal", "references"), NOTE),
        "Care plan", frozenset({"active"}),
    ),
    "DocumentReference": TypeView(
        "documents", ("type", "description"), ("date", "context.period.start"),
        (Shows("Category", "category", "concepts"), Shows("Description", "description", "string"),
         Shows("Author", "author", "references"), Shows("Period", "context.period", "period")),
        "Document", frozenset({"current"}),
    ),
    "ServiceRequest": TypeView(
        "referrals", ("code",), ("occurrenceDateTime", "authoredOn"),
        (Shows("Referred to", "performer", "references"), Shows("Reason", "reasonCode", "concepts"),
         Shows("Reason", "reasonReference", "references"), Shows("Intent", "intent", "code"),
         Shows("Priority", "priority", "code"), Shows("Category", "category", "concepts"),
         Shows("When", "occurrence", "choice"), Shows("Requested", "authoredOn", "date"), NOTE),
        "Referral", frozenset({"active"}),
    ),
    "Appointment": TypeView(
        "appointments", ("serviceType", "appointmentType", "description"), ("start", "created"),
        (Shows("Ends", "end", "date"), Shows("Reason", "reasonCode", "concepts"),
         Shows("Reason", "reasonReference", "references"),
         Shows("Description", "description", "string"),
         Shows("Cancelled because", "cancelationReason", "concept"),
         Shows("With", "participant", "participants"), Shows("Comment", "comment", "string"),
         Shows("Instructions", "patientInstruction", "string")),
        "Appointment", frozenset({"booked"}),
    ),
    "Flag": TypeView(
        "alerts", ("code",), ("period.start",),
        (Shows("Category", "category", "concepts"), Shows("Period", "period", "period")),
        "Alert", frozenset({"active"}),
    ),
    "CareTeam": TypeView(
        "contacts", ("name", "category"), ("period.start",),
        (Shows("Member", "participant", "team_members"), Shows("Category", "category", "concepts"),
         Shows("Period", "period", "period"), Shows("Reason", "reasonCode", "concepts"),
         Shows("Contact", "telecom", "telecom"), NOTE),
        "Care team", frozenset({"active"}),
    ),
    "RelatedPerson": TypeView(
        "contacts", ("name",), ("period.start",),
        (Shows("Relationship", "relationship", "concepts"), Shows("Contact", "telecom", "telecom"),
         Shows("Address", "address", "addresses"), Shows("Period", "period", "period")),
        "Related person", frozenset({"active"}),
    ),
    # PRSB "Legal information" (presentation/prsb.py): advance decisions, lasting powers
    # of attorney, DNACPR decisions; listed with the care plans, whose roles may see them.
    "Consent": TypeView(
        "care-plans", ("category", "scope"), ("dateTime", "provision.period.start"),
        (Shows("Kind", "scope", "concept"), Shows("Category", "category", "concepts"),
         Shows("Decision", "provision.type", "code"), Shows("About", "provision.code", "concepts"),
         Shows("In force", "provision.period", "period"), Shows("Recorded", "dateTime", "date"),
         Shows("Held by", "organization", "references"),
         Shows("Document", "sourceAttachment.title", "string")),
        "Legal decision", frozenset({"active"}),
    ),
}  # fmt: skip

# What a status code means beside an item, and how loudly: red changes what the item is
# (not true, not done, not to be given), orange means not settled, grey means not current.
STATUS_WORDS: dict[str, tuple[str, str]] = {
    "refuted": ("Refuted", "red"),
    "entered-in-error": ("Entered in error", "red"),
    "not-done": ("Not done", "red"),
    "not-taken": ("Not taken", "red"),
    "stopped": ("Stopped", "red"),
    "cancelled": ("Cancelled", "red"),
    "revoked": ("Revoked", "red"),
    "noshow": ("Did not attend", "red"),
    "provisional": ("Provisional", "orange"),
    "differential": ("Differential", "orange"),
    "unconfirmed": ("Unconfirmed", "orange"),
    "preliminary": ("Preliminary", "orange"),
    "partial": ("Partial", "orange"),
    "registered": ("Registered, no result yet", "orange"),
    "amended": ("Amended", "orange"),
    "corrected": ("Corrected", "orange"),
    "appended": ("Appended", "orange"),
    "unknown": ("Status unknown", "orange"),
    "draft": ("Draft", "orange"),
    "on-hold": ("On hold", "orange"),
    "suspended": ("Suspended", "orange"),
    "intended": ("Intended, not yet started", "orange"),
    "proposed": ("Proposed", "orange"),
    "rejected": ("Rejected", "red"),
    "pending": ("Pending", "orange"),
    "waitlist": ("Waiting list", "orange"),
    "planned": ("Planned", "orange"),
    "arrived": ("Arrived", "orange"),
    "triaged": ("Triaged", "orange"),
    "checked-in": ("Checked in", "orange"),
    "in-progress": ("In progress", "orange"),
    "onleave": ("On leave", "orange"),
    "preparation": ("In preparation", "orange"),
    "recurrence": ("Recurrence", "orange"),
    "relapse": ("Relapse", "orange"),
    "completed": ("Completed", "grey"),
    "inactive": ("Inactive", "grey"),
    "resolved": ("Resolved", "grey"),
    "remission": ("In remission", "grey"),
    "superseded": ("Superseded", "grey"),
    "finished": ("Finished", "grey"),
    "fulfilled": ("Attended", "grey"),
    "booked": ("Booked", "grey"),
    "active": ("Active", "grey"),
    "current": ("Current", "grey"),
    "final": ("Final", "grey"),
    "confirmed": ("Confirmed", "grey"),
}

# Words for codes the table shows as "code" or "codes" (FHIR required value sets).
CODE_WORDS: dict[str, str] = {
    "allergy": "Allergy",
    "intolerance": "Intolerance (not an allergy)",
    "medication": "Medication",
    "food": "Food",
    "environment": "Environment",
    "biologic": "Biologic",
    "high": "High",
    "low": "Low",
    "unable-to-assess": "Unable to assess",
    "mild": "Mild",
    "moderate": "Moderate",
    "severe": "Severe",
    "proposal": "Proposal",
    "plan": "Plan",
    "order": "Order",
    "original-order": "Original order",
    "reflex-order": "Reflex order",
    "filler-order": "Filler order",
    "instance-order": "Instance order",
    "option": "Option",
    "directive": "Directive",
    "routine": "Routine",
    "urgent": "Urgent",
    "asap": "As soon as possible",
    "stat": "Immediately",
    "accepted": "Accepted",
    "declined": "Declined",
    "tentative": "Tentative",
    "needs-action": "Not yet replied",
    "deny": "Refuses",
    "permit": "Agrees",
    "male": "Male",
    "female": "Female",
    "other": "Other",
    "unknown": "Unknown",
}

# Care settings (Encounter.class, HL7 v3 ActCode): what the code means, in plain English.
SETTING_WORDS: dict[str, str] = {
    "AMB": "Outpatient or community",
    "EMER": "Emergency department",
    "IMP": "Inpatient",
    "ACUTE": "Inpatient (acute)",
    "NONAC": "Inpatient (non-acute)",
    "OBSENC": "Observation stay",
    "PRENC": "Pre-admission",
    "SS": "Short stay",
    "VR": "Virtual (telephone or video)",
    "HH": "Home visit",
    "FLD": "Field visit",
}
# The value set's own displays, which senders copy into Coding.display (lower case,
# jargon): read through the code they stand for.
SETTING_DISPLAYS: dict[str, str] = {
    "ambulatory": "AMB",
    "emergency": "EMER",
    "inpatient encounter": "IMP",
    "inpatient acute": "ACUTE",
    "inpatient non-acute": "NONAC",
    "observation encounter": "OBSENC",
    "pre-admission": "PRENC",
    "short stay": "SS",
    "virtual": "VR",
    "home health": "HH",
    "field": "FLD",
}

# Each section's name where an item is listed outside its section (the timeline); the same
# words as RecordSection's labels.
SECTION_LABELS: dict[str, str] = {
    "demographics": "Demographics", "contacts": "Contacts and care team",
    "alerts": "Alerts and flags", "allergies": "Allergies and adverse reactions",
    "medications": "Medications", "problems": "Problems and diagnoses",
    "results": "Test results", "encounters": "Encounters", "referrals": "Referrals",
    "appointments": "Appointments", "care-plans": "Care plans", "documents": "Documents",
    "procedures": "Procedures", "immunisations": "Immunisations",
}  # fmt: skip

# What the date beside an item means, per section: a bare "Date" leaves the reader
# guessing whether a problem's date is its onset or when someone wrote it down.
DATE_LABELS: dict[str, str] = {
    "demographics": "Recorded",
    "contacts": "From",
    "alerts": "From",
    "allergies": "Recorded",
    "medications": "Started",
    "problems": "Onset",
    "results": "Taken",
    "encounters": "When",
    "referrals": "Requested",
    "appointments": "When",
    "care-plans": "Started",
    "documents": "Written",
    "procedures": "Performed",
    "immunisations": "Given",
}


def label_for(code: str) -> str:
    """The one label table: a status, a required code or a care setting, in plain English.

    An unknown code comes back as it was sent (never guessed), capitalised.
    """
    if code in STATUS_WORDS:
        return STATUS_WORDS[code][0]
    if code in CODE_WORDS:
        return CODE_WORDS[code]
    if code in SETTING_WORDS:
        return SETTING_WORDS[code]
    if code.lower() in SETTING_DISPLAYS:
        return SETTING_WORDS[SETTING_DISPLAYS[code.lower()]]
    return code.replace("-", " ").capitalize()


# Every code and sender's jargon the label table turns into words: none may reach a page
# as an item's value on its own (tests/sharedrecord/test_plain_english.py).
RAW_CODES: frozenset[str] = frozenset(
    {*STATUS_WORDS, *CODE_WORDS, *SETTING_WORDS, *SETTING_DISPLAYS}
)

# Courses of therapy (MedicationRequest.courseOfTherapyType; FHIR's and UK Core's codes):
# what a GP calls them.
COURSE_WORDS: dict[str, str] = {
    "acute": "Acute (short course)",
    "continuous": "Repeat",
    "continuous-repeat-dispensing": "Repeat dispensing",
    "seasonal": "Seasonal",
}
