"""The PRSB Core Information Standard content the record shows, and the one table that maps it.

PRSB_TABLE is the mapping: each row names a PRSB heading, the FHIR resource and
element (or code) that feeds it, how the page shows it and the record section
whose access policy governs it. docs/architecture.md prints the same table
(tests/sharedrecord/test_prsb.py keeps the two the same). about_the_person
builds the summary's "About the person" lines from what the viewer was shown:
nothing here decides visibility (access.py did, by section, before anything
reached this module).

Pure: no ORM, no settings.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sharedrecord.presentation.dates import period_ended
from sharedrecord.presentation.entries import ShownEntry
from sharedrecord.presentation.values import text_of


@dataclass(frozen=True)
class PrsbRow:
    """One line of the mapping: a PRSB heading and item, what feeds it, how it is shown."""

    heading: str
    item: str
    fhir: str
    shown: str
    section: str  # the record section (access_policy.toml) whose roles may see it


PRSB_TABLE: tuple[PrsbRow, ...] = (
    PrsbRow("Person demographics", "Phone and e-mail",
            "Patient.telecom (system phone, sms, email; not use old, not ended)",
            'Summary, "About the person": Phone, E-mail', "demographics"),
    PrsbRow("Communication", "Preferred language",
            "Patient.communication.language (the one with preferred true, else the first)",
            'Summary, "About the person": Preferred language', "demographics"),
    PrsbRow("Communication", "Interpreter needed",
            "Patient.extension patient-interpreterRequired, or the UK Core NHSCommunication "
            "extension's interpreterRequired",
            'Summary, "About the person": Interpreter', "demographics"),
    PrsbRow("About me", "About me and personal preferences",
            'CarePlan whose category or title says "about me", "what matters to me" or '
            '"personal preferences"',
            'Summary, "About the person": About me; Care plans page, "About me"', "care-plans"),
    PrsbRow("Legal information", "Advance decision to refuse treatment",
            "Consent with scope adr or category acd or hcd (HL7 consent codes), or titled "
            '"advance decision"',
            'Summary, "About the person"; Care plans page, "Legal information"', "care-plans"),
    PrsbRow("Legal information", "Lasting power of attorney",
            'Consent titled "power of attorney"; RelatedPerson whose relationship says '
            '"power of attorney" (the attorney, with their contact)',
            'Summary, "About the person"; Care plans or Contacts page', "care-plans, contacts"),
    PrsbRow("End of life care", "End of life care plan",
            "CarePlan or Flag coded SNOMED CT 736373009 or 395104009, or titled "
            '"end of life" or "palliative"',
            'Banner "End of life care"; Summary, "About the person"', "care-plans, alerts"),
    PrsbRow("End of life care", "ReSPECT plan",
            'CarePlan or Flag coded SNOMED CT 1108161000000109, or titled "ReSPECT"',
            'Banner "ReSPECT plan"; Summary, "About the person"', "care-plans, alerts"),
    PrsbRow("End of life care", "DNACPR decision",
            "Flag, CarePlan or Consent coded SNOMED CT 304253006, 450476008 or "
            '1066391000000105, or consent category dnr, or titled "DNACPR"',
            'Banner "DNACPR"; Summary, "About the person"', "alerts, care-plans"),
    PrsbRow("Contacts", "Next of kin",
            "RelatedPerson.relationship NOK (v3 RoleCode) or N (v2 0131), or titled "
            '"next of kin"',
            'Summary, "About the person": Next of kin; Contacts page', "contacts"),
    PrsbRow("Contacts", "Carer",
            'RelatedPerson.relationship CAREGIVER, or whose relationship says "carer"',
            'Summary, "About the person": Carer; Contacts page', "contacts"),
)  # fmt: skip

# Headings in the order the summary and the care plans page show them.
HEADINGS = ("Person demographics", "Communication", "About me", "Legal information",
            "End of life care", "Contacts")  # fmt: skip

INTERPRETER_URLS = (
    "http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired",
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSCommunication",
)
ADVANCE_DECISION_CODES = frozenset({"adr", "acd", "hcd"})
END_OF_LIFE_CODES = frozenset({"736373009", "395104009"})
RESPECT_CODES = frozenset({"1108161000000109"})
DNACPR_CODES = frozenset({"304253006", "450476008", "1066391000000105", "dnr"})
NEXT_OF_KIN_CODES = frozenset({"NOK", "N"})
CARER_CODES = frozenset({"CAREGIVER"})


@dataclass(frozen=True)
class AboutLine:
    """One line of "About the person": under a PRSB heading, a label and its value.

    `entry` is the public id of the item it was read from (the page and the
    audit name it).
    """

    heading: str
    label: str
    value: str
    entry: str = ""


def _words(item: ShownEntry) -> str:
    return " ".join([item.title, *(d.value for d in item.details)]).lower()


def _says(words: str, *phrases: str) -> bool:
    split = words.replace(",", " ").replace(".", " ").split()
    return any((p in words) if " " in p else (p in split) for p in phrases)


def _codes(item: ShownEntry) -> set[str]:
    return {c.rpartition("|")[2] for c in item.codes}


def prsb_item_of(item: ShownEntry) -> tuple[str, str] | None:
    """(PRSB heading, item) for an alert, care plan, consent or related person; None if none.

    The first rule that matches wins, in the order of PRSB_TABLE's end of
    life, legal, about me and contacts rows.
    """
    words, codes = _words(item), _codes(item)
    kind = item.resource_type
    if kind in ("Flag", "CarePlan", "Consent"):
        if codes & DNACPR_CODES or _says(words, "dnacpr", "do not attempt cardiopulmonary",
                                         "not for resuscitation"):  # fmt: skip
            return ("End of life care", "DNACPR decision")
        if codes & RESPECT_CODES or _says(words, "respect"):
            return ("End of life care", "ReSPECT plan")
        if codes & END_OF_LIFE_CODES or _says(words, "end of life", "palliative"):
            return ("End of life care", "End of life care plan")
    if kind in ("Consent", "RelatedPerson") and _says(words, "power of attorney", "lpa"):
        return ("Legal information", "Lasting power of attorney")
    if kind == "Consent":
        if codes & ADVANCE_DECISION_CODES or _says(words, "advance decision", "adrt"):
            return ("Legal information", "Advance decision to refuse treatment")
        return None  # a privacy or research consent: listed with the care plans only
    if kind == "CarePlan" and _says(words, "about me", "what matters to me",
                                    "personal preferences"):  # fmt: skip
        return ("About me", "About me")
    if kind == "RelatedPerson":
        if codes & NEXT_OF_KIN_CODES or _says(words, "next of kin", "next-of-kin"):
            return ("Contacts", "Next of kin")
        if codes & CARER_CODES or _says(words, "carer", "caregiver"):
            return ("Contacts", "Carer")
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _extension_flag(extensions: Any) -> bool | None:
    """The interpreterRequired value in these extensions (nested UK Core ones too)."""
    for ext in _list(extensions):
        if not isinstance(ext, dict):
            continue
        url = str(ext.get("url", ""))
        if url in (INTERPRETER_URLS[0], "interpreterRequired") and isinstance(
            ext.get("valueBoolean"), bool
        ):
            return bool(ext["valueBoolean"])
        if (
            url == INTERPRETER_URLS[1]
            and (found := _extension_flag(ext.get("extension"))) is not None
        ):
            return found
    return None


def person_lines(
    person: Mapping[str, Any] | None, entry: str = "", *, now: datetime.datetime
) -> list[AboutLine]:
    """The person's own phone and e-mail, language and interpreter need, from their Patient."""
    if not person:
        return []
    lines: list[AboutLine] = []
    telecoms = [t for t in _list(person.get("telecom")) if isinstance(t, dict)]
    for telecom in telecoms:
        value, use = str(telecom.get("value") or "").strip(), str(telecom.get("use") or "")
        period = telecom.get("period")
        if (
            not value
            or use == "old"
            or (isinstance(period, dict) and period_ended(period, now=now))
        ):
            continue
        system = telecom.get("system")
        label = {"phone": "Phone", "sms": "Phone", "email": "E-mail"}.get(str(system))
        if label:
            words = {"mobile": "mobile", "home": "home", "work": "work", "temp": "temporary"}
            suffix = f" ({words[use]})" if use in words else ""
            lines.append(AboutLine("Person demographics", label, value + suffix, entry))
    spoken = [c for c in _list(person.get("communication")) if isinstance(c, dict)]
    chosen = next((c for c in spoken if c.get("preferred") is True), spoken[0] if spoken else None)
    if chosen is not None and (language := text_of(chosen.get("language"))):
        lines.append(AboutLine("Communication", "Preferred language", language, entry))
    interpreter = _extension_flag(person.get("extension"))
    for each in spoken:
        found = _extension_flag(each.get("extension"))
        interpreter = found if found is not None else interpreter
    if interpreter is not None:
        lines.append(
            AboutLine(
                "Communication", "Interpreter",
                "Needed: book one" if interpreter else "Not needed", entry,
            )
        )  # fmt: skip
    return lines


def _value_of(item: ShownEntry, item_name: str) -> str:
    """The line's value: the item's title (when it is not just the item's name) and its plan."""
    extra = next(
        (d.value for d in item.details if d.label in ("Plan", "Relationship", "Contact")), ""
    )
    title = item.title if item.title.lower() != item_name.lower() else ""
    value = "; ".join(v for v in (title, extra) if v) or item_name
    return f"{value} ({item.source_name}{', ' + item.when_shown if item.when_shown else ''})"


def about_the_person(
    *,
    person: Mapping[str, Any] | None,
    person_entry: str,
    items: list[ShownEntry],
    now: datetime.datetime,
) -> list[AboutLine]:
    """The summary's "About the person" lines, in HEADINGS order, from what the viewer was shown.

    `person` is the Patient resource the banner's demographics come from;
    `items` are the shown alerts, care plans, consents and related people
    (each already within the viewer's sections).
    """
    lines = person_lines(person, person_entry, now=now)
    for item in items:
        found = prsb_item_of(item)
        if found is not None:
            heading, name = found
            lines.append(AboutLine(heading, name, _value_of(item, name), item.public_id))
    order = {h: i for i, h in enumerate(HEADINGS)}
    return sorted(lines, key=lambda line: order.get(line.heading, len(HEADINGS)))


def prsb_markdown() -> str:
    """PRSB_TABLE as the Markdown table docs/architecture.md holds."""
    rows = ["| PRSB heading | Item | FHIR that feeds it | How it is shown | Governed by section |",
            "|---|---|---|---|---|"]  # fmt: skip
    rows += [f"| {r.heading} | {r.item} | {r.fhir} | {r.shown} | {r.section} |" for r in PRSB_TABLE]
    return "\n".join(rows)
