"""Patient matching: exactly one of MATCHED, NO_MATCH, AMBIGUOUS or INSUFFICIENT.

Never filters on a blank or invalid identifier, never picks one of several
candidates and never creates a patient: the caller decides what each
outcome does.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass

import nhs_number as nhs

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
