"""Reading typed values out of a validated resource: dates, coding, status, references,
every code, NHS numbers and the content hash.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from ingestion.fhir.profile import CODE_PATHS, NHS_NUMBER_SYSTEM, STATUS_PATHS
from sharedrecord import fhirjson


def value_at(resource: dict[str, Any], path: str) -> Any:
    """The value at a dotted path ("effectivePeriod.start", "type[0]"), or None."""
    value: Any = resource
    for part in path.split("."):
        index = None
        if part.endswith("]"):
            part, _, rest = part.partition("[")
            index = int(rest[:-1])
        value = value.get(part) if isinstance(value, dict) else None
        if index is not None:
            value = value[index] if isinstance(value, list) and len(value) > index else None
        if value is None:
            return None
    return value


def instant(value: Any) -> datetime.datetime | None:
    """A FHIR date, dateTime or instant as an aware datetime (UTC when none given), or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    for form in (
        text,
        text + "-01-01" if len(text) == 4 else None,
        text + "-01" if len(text) == 7 else None,
    ):
        if not form:
            continue
        try:
            parsed = datetime.datetime.fromisoformat(form)
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
    return None


def primary_coding(resource: dict[str, Any], resource_type: str) -> tuple[str, str, str]:
    """(system, code, display) of the type's main concept (CODE_PATHS), or the text alone."""
    for path in CODE_PATHS.get(resource_type, ("code",)):
        concept = value_at(resource, path)
        if isinstance(concept, dict):
            codings = concept.get("coding") if "coding" in concept else [concept]
            for coding in codings or []:
                if isinstance(coding, dict) and coding.get("code"):
                    return (
                        str(coding.get("system", ""))[:200],
                        str(coding["code"])[:64],
                        str(coding.get("display") or concept.get("text") or "")[:400],
                    )
            if concept.get("text"):
                return "", "", str(concept["text"])[:400]
    return "", "", ""


def status_of(resource: dict[str, Any]) -> str:
    """The status the record indexes; an entered-in-error verificationStatus wins."""
    verification = resource.get("verificationStatus")
    if isinstance(verification, dict) and any(
        c.get("code") == "entered-in-error" for c in verification.get("coding", [])
    ):
        return "entered-in-error"
    for path in STATUS_PATHS:
        value = resource.get(path)
        if isinstance(value, str):
            return value[:40]
        if isinstance(value, dict):
            for coding in value.get("coding", []):
                if coding.get("code"):
                    return str(coding["code"])[:40]
    return ""


def references_at(resource: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """The Reference objects at a SUPPORTED patient path ("subject", "participant[].actor")."""
    if path.endswith(".actor") and path.startswith("participant[]"):
        return [
            p["actor"] for p in resource.get("participant", []) if isinstance(p.get("actor"), dict)
        ]
    ref = resource.get(path)
    return [ref] if isinstance(ref, dict) else []


def content_hash(resource: dict[str, Any]) -> str:
    """Hash of the resource without meta (a re-send with a new lastUpdated is unchanged)."""
    body = {k: v for k, v in resource.items() if k != "meta"}
    return hashlib.sha256(fhirjson.hash_text(body).encode()).hexdigest()


def nhs_numbers_of(resource: dict[str, Any]) -> tuple[str, ...]:
    """The NHS numbers a Patient resource carries (as sent: spaces removed, not yet checked)."""
    found = []
    for identifier in resource.get("identifier", []):
        if isinstance(identifier, dict) and identifier.get("system") == NHS_NUMBER_SYSTEM:
            found.append(str(identifier.get("value", "")).replace(" ", ""))
    return tuple(dict.fromkeys(found))


def codes_of(resource: dict[str, Any]) -> tuple[str, ...]:
    """Every coding in the resource as "system|code", sorted and distinct.

    All of them, not only the primary code: the access policy restricts an
    item when any coding is on a sensitive list (an HIV test's LOINC code, an
    antiretroviral's medicine code, a reason code), whatever labels the
    sender set.
    """
    found: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                if key == "coding" and isinstance(child, list):
                    for coding in child:
                        if isinstance(coding, dict) and coding.get("code"):
                            found.add(f"{coding.get('system', '')}|{coding['code']}"[:300])
                visit(child)
        elif isinstance(value, list):
            for child in value:
                visit(child)

    visit(resource)
    return tuple(sorted(found))


def birth_date_of(resource: dict[str, Any]) -> datetime.date | None:
    """A Patient's birthDate when it is a full date (YYYY-MM-DD), else None."""
    birth = resource.get("birthDate")
    if isinstance(birth, str) and len(birth) == 10:
        return datetime.date.fromisoformat(birth)
    return None
