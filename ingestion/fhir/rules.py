"""The specification's rules structural validation misses: ids, empty values, Period order,
active content, narrative and extensions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ingestion.fhir.bindings import binding_rules
from ingestion.fhir.fields import instant
from ingestion.fhir.narrative import narrative_problem
from ingestion.fhir.results import EntryError

MAX_STRING = 1024 * 1024
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ACTIVE_CONTENT = re.compile(
    r"<\s*(script|iframe|object|embed|form|style|link|meta|base)\b|\bon[a-z]+\s*=|javascript:",
    re.IGNORECASE,
)


def walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every value in a resource with its path, depth first, the resource itself first."""
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk(child, f"{path}.{key}")
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from walk(child, f"{path}[{i}]")


def _period_reversed(start: str, end: str) -> bool:
    """per-1: start <= end, with FHIRPath's rule that values of different precision
    which agree as far as both go cannot be ordered (so the invariant fails)."""
    if len(start) >= 19 and len(end) >= 19:
        first, last = instant(start), instant(end)
        return bool(first and last and last < first)
    width = min(len(start), len(end), 19)
    if end[:width] != start[:width]:
        return end[:width] < start[:width]
    return len(start) != len(end)


def extra_rules(resource: dict[str, Any], resource_type: str, source: Any) -> None:
    """Rules pydantic validation does not enforce (the FHIR validator's invariants).

    In this order: ids, required bindings, empty and over-long values, Period
    order, active content in any string, narrative XHTML, extensions.
    """
    _id_rules(resource, resource_type)
    binding_rules(resource, resource_type)
    problems: list[str] = []
    # JSON input is validated as sent (resource is source): one walk checks both
    # sets of rules, and the first Period or active-content problem waits until
    # the empty and over-long values have had their turn, as with two walks.
    same = resource is source
    later: EntryError | None = None
    for path, value in walk(source, resource_type):
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise EntryError("too-long", "A string is longer than FHIR allows (1 MB).", (path,))
        if value in ([], {}) or (isinstance(value, str) and not value.strip()):
            problems.append(path)
        if same and later is None:
            later = _value_problem(path, value)
    if problems:
        raise EntryError(
            "empty-value",
            "FHIR does not allow empty arrays, objects or strings.",
            tuple(problems[:10]),
        )
    if not same:
        for path, value in walk(resource, resource_type):
            later = _value_problem(path, value)
            if later is not None:
                break
    if later is not None:
        raise later
    for path, inner in _resources(resource, resource_type):
        text = inner.get("text")
        if isinstance(text, dict) and isinstance(text.get("div"), str):
            problem = narrative_problem(text["div"])
            if problem is not None:
                raise EntryError(problem[0], problem[1], (f"{path}.text.div",))
    _extension_rules(resource, resource_type, nested=False)


def _value_problem(path: str, value: Any) -> EntryError | None:
    """A Period that ends before it starts (per-1), or script or active HTML in a string."""
    if (
        isinstance(value, dict)
        and isinstance(value.get("start"), str)
        and isinstance(value.get("end"), str)
    ) and _period_reversed(value["start"], value["end"]):
        return EntryError("period-order", "A Period ends before it starts (per-1).", (path,))
    if (
        isinstance(value, str)
        and (path.endswith(".div") or "<" in value)
        and _ACTIVE_CONTENT.search(value)
    ):
        return EntryError(
            "active-content", "Narrative or text holds script or active HTML.", (path,)
        )
    return None


def _resources(resource: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The resource and those contained in it (dom-2: contained ones hold no more)."""
    yield path, resource
    contained = resource.get("contained")
    for i, inner in enumerate(contained if isinstance(contained, list) else []):
        if isinstance(inner, dict):
            yield from _resources(inner, f"{path}.contained[{i}]")


def _id_rules(resource: dict[str, Any], resource_type: str) -> None:
    """The id type's rule, [A-Za-z0-9-.]{1,64}, on every resource id and meta.versionId."""
    for path, inner in _resources(resource, resource_type):
        meta = inner.get("meta")
        for where, value in (
            ("id", inner.get("id")),
            ("meta.versionId", meta.get("versionId") if isinstance(meta, dict) else None),
        ):
            if value is not None and not (isinstance(value, str) and ID_PATTERN.match(value)):
                raise EntryError(
                    "invalid-id", "Ids are 1-64 of A-Z a-z 0-9 - .", (f"{path}.{where}",)
                )


# ---------------------------------------------------------------- extensions

_ABSOLUTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S")


def _extension_rules(value: Any, path: str, *, nested: bool) -> None:
    """Extensions anywhere (resources, datatypes, primitives' `_x`): url and ext-1.

    An extension's url is required and absolute, except for the parts of a
    complex extension (Extension.extension), whose url names the part
    ("ombCategory") relative to the extension's own. Each has a value or
    nested extensions, not both and not neither (ext-1).
    """
    if isinstance(value, list):
        for i, item in enumerate(value):
            _extension_rules(item, f"{path}[{i}]", nested=nested)
        return
    if not isinstance(value, dict):
        return
    for key, child in value.items():
        here = f"{path}.{key}"
        if key not in ("extension", "modifierExtension") or not isinstance(child, list):
            _extension_rules(child, here, nested=False)
            continue
        for i, extension in enumerate(child):
            if not isinstance(extension, dict):
                continue
            where = f"{here}[{i}]"
            url = extension.get("url")
            if not isinstance(url, str) or not url.strip():
                raise EntryError(
                    "invalid-extension", "An extension needs a url.", (f"{where}.url",)
                )
            if not (nested and key == "extension") and not _ABSOLUTE_URI.match(url):
                raise EntryError(
                    "invalid-extension",
                    "An extension's url must be absolute (only a complex extension's parts "
                    "may use a relative name).",
                    (f"{where}.url",),
                )
            has_value = any(k.startswith(("value", "_value")) for k in extension)
            if has_value == bool(extension.get("extension")):
                raise EntryError(
                    "invalid-extension",
                    "An extension has either a value or nested extensions, not both and "
                    "not neither (ext-1).",
                    (where,),
                )
            for part, inner in extension.items():
                if part == "extension":
                    _extension_rules({"extension": inner}, where, nested=True)
                elif part != "url":
                    _extension_rules(inner, f"{where}.{part}", nested=False)
