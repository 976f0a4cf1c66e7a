"""The access-basis rules in access.py, one test per branch: pages and API ask the same ones."""

from __future__ import annotations

from typing import Any

import pytest

from sharedrecord.access import (
    ACTIVE_CARE_TYPES,
    BASIS_WORDS_MIN,
    RELATIONSHIP_TYPES,
    api_purpose_acceptable,
    basis_is_self_claimed,
    basis_kind_allowed,
    basis_kind_for_purpose,
    basis_kind_routine,
    basis_needs_review,
    claimed_role_acceptable,
    justification_acceptable,
    override_reason_acceptable,
)
from sharedrecord.models import RELATIONSHIP_INDEX_TYPES, BasisKind

RELATED = ["registered"]


@pytest.mark.parametrize(
    ("model", "routine", "refused"),
    [
        ("implied", BasisKind.DIRECT_CARE, BasisKind.CONSENT),
        ("explicit", BasisKind.CONSENT, BasisKind.DIRECT_CARE),
    ],
)
def test_the_routine_kind_follows_the_consent_model_and_the_other_is_refused(
    settings: Any, model: str, routine: BasisKind, refused: BasisKind
) -> None:
    settings.CONSENT_MODEL = model
    assert basis_kind_routine() == routine
    assert basis_kind_allowed(routine)
    assert basis_kind_allowed(BasisKind.BREAK_GLASS)
    assert not basis_kind_allowed(refused)
    assert not basis_kind_allowed("anything-else")


def test_a_routine_basis_without_a_relationship_is_self_claimed() -> None:
    routine = basis_kind_routine()
    assert basis_is_self_claimed(kind=routine, relationships=[])
    assert not basis_is_self_claimed(kind=routine, relationships=RELATED)
    assert not basis_is_self_claimed(kind=BasisKind.BREAK_GLASS, relationships=[])


def test_emergency_access_and_reads_without_a_relationship_need_review() -> None:
    routine = basis_kind_routine()
    assert basis_needs_review(kind=BasisKind.BREAK_GLASS, relationships=RELATED)
    assert basis_needs_review(kind=BasisKind.BREAK_GLASS, relationships=[])
    assert basis_needs_review(kind=routine, relationships=[])
    assert not basis_needs_review(kind=routine, relationships=RELATED)


def test_words_need_at_least_the_minimum_once_trimmed() -> None:
    enough, short = "x" * BASIS_WORDS_MIN, "x" * (BASIS_WORDS_MIN - 1)
    for rule in (claimed_role_acceptable, justification_acceptable):
        assert rule(enough)
        assert not rule(short)
        assert not rule(f"  {short}  ")


def test_emergency_access_names_an_hl7_override_reason() -> None:
    assert override_reason_acceptable("OVRER")
    assert not override_reason_acceptable("ovrer")
    assert not override_reason_acceptable("")


def test_an_api_purpose_is_treat_or_etreat_and_etreat_is_emergency_access() -> None:
    assert api_purpose_acceptable("TREAT")
    assert api_purpose_acceptable("ETREAT")
    assert not api_purpose_acceptable("HPAYMT")
    assert basis_kind_for_purpose("ETREAT") == BasisKind.BREAK_GLASS
    assert basis_kind_for_purpose("TREAT") == basis_kind_routine()


def test_the_relationship_index_holds_every_type_the_relationships_are_read_from() -> None:
    # A type missing from the partial index would be read from the heap on every read.
    assert sorted(RELATIONSHIP_INDEX_TYPES) == sorted({*RELATIONSHIP_TYPES, *ACTIVE_CARE_TYPES})
