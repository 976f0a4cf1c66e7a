"""Patient matching: exactly one of MATCHED, NO_MATCH, AMBIGUOUS or INSUFFICIENT.

Never filters on a blank or invalid identifier, never picks one of several
candidates and never creates a patient: the caller decides what each
outcome does. patient_candidates lists, with a score, the people a parked
message may mean, for a data quality officer to choose from.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass

import nhs_number as nhs
from django.db.models.functions import Upper

from sharedrecord.models import Patient


class MatchOutcome(enum.StrEnum):
    MATCHED = "matched"
    NO_MATCH = "no-match"
    AMBIGUOUS = "ambiguous"
    INSUFFICIENT = "insufficient"


@dataclass(frozen=True)
class Demographics:
    nhs_number: str = ""
    birth_date: datetime.date | None = None


@dataclass(frozen=True)
class MatchResult:
    outcome: MatchOutcome
    patient: Patient | None = None
    reason: str = ""


def nhs_number_normalise(value: str) -> str:
    """Digits only (spaces and dashes as people type them removed)."""
    return "".join(ch for ch in value if not ch.isspace() and ch != "-")


def nhs_number_is_valid(value: str) -> bool:
    """Ten digits with a correct Modulus 11 check digit."""
    value = nhs_number_normalise(value)
    return len(value) == 10 and value.isdigit() and bool(nhs.is_valid(value))


def patient_match(*, demographics: Demographics) -> MatchResult:
    """Find the one person these demographics name, by NHS number only.

    A stored birth date that disagrees with the sender's makes the match
    AMBIGUOUS (parked for a person to review), never a guess either way.
    """
    number = nhs_number_normalise(demographics.nhs_number)
    if not number:
        return MatchResult(MatchOutcome.INSUFFICIENT, reason="no-nhs-number")
    if not nhs_number_is_valid(number):
        return MatchResult(MatchOutcome.INSUFFICIENT, reason="invalid-nhs-number")
    # NHS numbers are unique in the record, so there is never more than one candidate.
    patient = Patient.objects.filter(nhs_number=number).first()
    if patient is None:
        return MatchResult(MatchOutcome.NO_MATCH)
    if (
        demographics.birth_date
        and patient.birth_date
        and demographics.birth_date != patient.birth_date
    ):
        return MatchResult(MatchOutcome.AMBIGUOUS, reason="demographics-conflict")
    return MatchResult(MatchOutcome.MATCHED, patient=patient)


# ------------------------------------------------------------------ candidates for a reviewer


@dataclass(frozen=True)
class SentIdentity:
    """Who a parked message says the person is: the identifiers and demographics it sent."""

    nhs_number: str = ""
    family: str = ""
    given: str = ""
    birth_date: datetime.date | None = None
    postcode: str = ""
    gender: str = ""


@dataclass(frozen=True)
class Candidate:
    """A person in the record who may be the one a parked message meant, with a score.

    The score (0 to 100) adds up the weights of the fields that agree
    (CANDIDATE_WEIGHTS); 100 is every field agreeing. Nothing links on a
    score: a data quality officer decides.
    """

    patient: Patient
    score: int
    agreeing: tuple[str, ...]
    disagreeing: tuple[str, ...]

    @property
    def certain(self) -> bool:
        return self.score == 100


CANDIDATE_WEIGHTS = {
    "nhs-number": 40, "family": 15, "given": 10, "birth-date": 20, "postcode": 10, "gender": 5,
}  # fmt: skip
CANDIDATES_SHOWN = 5


def _plain(value: str) -> str:
    return "".join(value.split()).upper()


def _compare(sent: SentIdentity, patient: Patient) -> Candidate:
    pairs = {
        "nhs-number": (nhs_number_normalise(sent.nhs_number), patient.nhs_number),
        "family": (_plain(sent.family), _plain(patient.family_name)),
        "given": (_plain(sent.given), _plain(patient.given_names)),
        "birth-date": (
            sent.birth_date.isoformat() if sent.birth_date else "",
            patient.birth_date.isoformat() if patient.birth_date else "",
        ),
        "postcode": (_plain(sent.postcode), _plain(patient.postcode)),
        "gender": (sent.gender.lower(), patient.gender.lower()),
    }
    agreeing = tuple(f for f, (a, b) in pairs.items() if a and b and a == b)
    disagreeing = tuple(f for f, (a, b) in pairs.items() if a and b and a != b)
    score = sum(CANDIDATE_WEIGHTS[f] for f in agreeing)
    return Candidate(patient, score, agreeing, disagreeing)


def patient_candidates(*, sent: SentIdentity) -> list[Candidate]:
    """The people a parked message may mean, best first: deterministic, never a guess.

    1. The person holding the NHS number sent, when it is a valid one.
    2. People with the same family name and date of birth (exact, case and
       spaces aside); the postcode, given names and sex then add to the score.
    Ordered by score, then NHS number; at most CANDIDATES_SHOWN. Nothing is
    searched on a blank or invalid value.
    """
    found: dict[int, Patient] = {}
    number = nhs_number_normalise(sent.nhs_number)
    if nhs_number_is_valid(number):
        for patient in Patient.objects.filter(nhs_number=number):
            found[patient.pk] = patient
    if sent.family.strip() and sent.birth_date is not None:
        same = Patient.objects.annotate(family_upper=Upper("family_name")).filter(
            family_upper=sent.family.strip().upper(), birth_date=sent.birth_date
        )
        for patient in same.order_by("nhs_number")[: CANDIDATES_SHOWN * 4]:
            found[patient.pk] = patient
    ranked = sorted(
        (_compare(sent, p) for p in found.values()),
        key=lambda c: (-c.score, c.patient.nhs_number),
    )
    return ranked[:CANDIDATES_SHOWN]
