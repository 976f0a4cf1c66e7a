"""The access policy table (access_policy.toml): loaded once, checked, and typed.

The table says which sections each role sees at each kind of organisation,
which labels and code lists make an item restricted, and which elements of
one section belong to another. It decides nothing itself: sharedrecord.access
applies it. ACCESS_POLICY_FILE points at a deployment's own copy.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from sharedrecord.models import (
    CLINICAL_ROLES,
    OrganisationKind,
    RecordSection,
    StaffRole,
)

ALL_SECTIONS = frozenset(RecordSection.values)


# ------------------------------------------------------------------ the policy table


@dataclass(frozen=True)
class VisibilityRow:
    role: str
    organisation_kind: str  # "*" for any
    sections: frozenset[str]


@dataclass(frozen=True)
class SensitiveCategory:
    """A category of sensitive care and the codes that identify it ("system|code")."""

    key: str
    label: str
    codes: frozenset[str]


@dataclass(frozen=True)
class SensitivityRules:
    restricted_labels: frozenset[str]
    very_restricted_labels: frozenset[str]
    categories: tuple[SensitiveCategory, ...]
    restricted_roles: frozenset[str]
    break_glass_unlocks_roles: frozenset[str]

    @functools.cached_property
    def sensitive_codes(self) -> frozenset[str]:
        """Every listed code of every category, as "system|code".

        Also each code with no system ("|code"), as ingestion stores a coding
        that names none: a sender that leaves the system out must not make a
        sensitive item ordinary (restricting a stray match is the safe side).
        """
        listed = frozenset().union(*(c.codes for c in self.categories))
        return listed | {"|" + code.partition("|")[2] for code in listed}


@dataclass(frozen=True)
class PolicyTable:
    rows: tuple[VisibilityRow, ...]
    sensitivity: SensitivityRules
    # Section -> "Type.element" that belong to it wherever they appear.
    section_fields: tuple[tuple[str, frozenset[str]], ...] = ()

    def withheld_elements(self, sections: frozenset[str]) -> dict[str, frozenset[str]]:
        """Resource type -> top-level elements to remove for a viewer of these sections."""
        withheld: dict[str, set[str]] = {}
        for section, fields in self.section_fields:
            if section in sections:
                continue
            for name in fields:
                resource_type, _, element = name.partition(".")
                withheld.setdefault(resource_type, set()).add(element)
        return {k: frozenset(v) for k, v in sorted(withheld.items())}

    def sections_for(self, role: str, organisation_kind: str) -> frozenset[str]:
        """The first matching row's sections; none for a role the table does not name."""
        for row in self.rows:
            if row.role == role and row.organisation_kind in ("*", organisation_kind):
                return row.sections
        return frozenset()


def _strings(value: Any, where: str, allowed: frozenset[str] | None = None) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImproperlyConfigured(f"Access policy: {where} must be a list of strings.")
    unknown = set(value) - allowed if allowed is not None else set()
    if unknown:
        raise ImproperlyConfigured(f"Access policy: {where} names unknown {sorted(unknown)}.")
    return frozenset(value)


@functools.cache
def policy_table_load(path: Path) -> PolicyTable:
    """Read and check the TOML table; a mistake stops the process instead of guessing."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ImproperlyConfigured(f"Access policy {path} cannot be read: {exc}") from exc
    rows = []
    for i, row in enumerate(raw.get("visibility", [])):
        role, kind, sections = row.get("role"), row.get("organisation_kind"), row.get("sections")
        if role not in CLINICAL_ROLES:
            raise ImproperlyConfigured(f"Access policy row {i}: role {role!r} reads no records.")
        if kind != "*" and kind not in OrganisationKind.values:
            raise ImproperlyConfigured(f"Access policy row {i}: unknown kind {kind!r}.")
        chosen = (
            ALL_SECTIONS
            if sections == "all"
            else _strings(sections, f"row {i} sections", ALL_SECTIONS)
        )
        # Demographics identify the person the reader asked for; every role sees them.
        rows.append(VisibilityRow(role, kind, chosen | {RecordSection.DEMOGRAPHICS.value}))
    s = raw.get("sensitivity", {})
    roles = frozenset(StaffRole.values)
    rules = SensitivityRules(
        restricted_labels=_strings(s.get("restricted_labels", []), "restricted_labels"),
        very_restricted_labels=_strings(
            s.get("very_restricted_labels", []), "very_restricted_labels"
        ),
        categories=_categories(s),
        restricted_roles=_strings(s.get("restricted_roles", []), "restricted_roles", roles),
        break_glass_unlocks_roles=_strings(
            s.get("break_glass_unlocks_roles", []), "break_glass_unlocks_roles", roles
        ),
    )
    section_fields = []
    for section, fields in raw.get("section_fields", {}).items():
        if section not in ALL_SECTIONS:
            raise ImproperlyConfigured(f"Access policy: section_fields names {section!r}.")
        chosen = _strings(fields, f"section_fields.{section}")
        bad = sorted(f for f in chosen if not SECTION_FIELD.fullmatch(f))
        if bad:
            raise ImproperlyConfigured(
                f"Access policy: section_fields.{section} needs Type.element, not {bad}."
            )
        section_fields.append((section, chosen))
    return PolicyTable(tuple(rows), rules, tuple(section_fields))


SECTION_FIELD = re.compile(r"[A-Z][A-Za-z]+\.[a-z][A-Za-z]*")

# Code systems a category may list codes of, by the key used in the TOML.
CODE_SYSTEMS = {
    "snomed": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "dmd": "https://dmd.nhs.uk",
}


def _categories(sensitivity: dict[str, Any]) -> tuple[SensitiveCategory, ...]:
    """The sensitive categories and their codes; `sensitive_codes` (older files) is SNOMED CT."""
    found = []
    for key, table in sensitivity.get("categories", {}).items():
        if not isinstance(table, dict) or not isinstance(table.get("label"), str):
            raise ImproperlyConfigured(f"Access policy: category {key!r} needs a label.")
        unknown = set(table) - {"label", "other", *CODE_SYSTEMS}
        if unknown:
            raise ImproperlyConfigured(f"Access policy: category {key!r} has {sorted(unknown)}.")
        codes = {
            f"{system}|{code}"
            for name, system in CODE_SYSTEMS.items()
            for code in _strings(table.get(name, []), f"categories.{key}.{name}")
        }
        other = _strings(table.get("other", []), f"categories.{key}.other")
        if any("|" not in code for code in other):
            raise ImproperlyConfigured(f"Access policy: categories.{key}.other needs system|code.")
        found.append(SensitiveCategory(key, table["label"], frozenset(codes | other)))
    legacy = _strings(sensitivity.get("sensitive_codes", []), "sensitive_codes")
    if legacy:
        snomed = frozenset(f"{CODE_SYSTEMS['snomed']}|{code}" for code in legacy)
        found.append(SensitiveCategory("listed", "Listed SNOMED CT codes", snomed))
    return tuple(found)


def policy_table() -> PolicyTable:
    """The deployment's policy table (ACCESS_POLICY_FILE), loaded once per path."""
    return policy_table_load(Path(settings.ACCESS_POLICY_FILE))
