"""The NHS design system's files as static files, its stylesheets without the web font.

nhsuk-frontend's CSS names the Frutiger web font on assets.nhs.uk. Its licence
does not let us serve the font, and a page must ask nothing of a third-party
host, so its stylesheets are served without their @font-face rules: the font
family names nothing a browser can fetch and pages use the design system's own
fallback, Arial. The stripped copies are written next to the collected static
files (STATIC_ROOT's parent, ignored by git) and rewritten when npm updates the
package; every other file is served as installed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.staticfiles.finders import BaseFinder
from django.contrib.staticfiles.utils import get_files
from django.core.checks import CheckMessage
from django.core.files.storage import FileSystemStorage, Storage

PREFIX = "nhsuk"
FONT_FACE = re.compile(r"@font-face\s*\{[^}]*\}")


def without_web_fonts(css: str) -> str:
    """The stylesheet without its @font-face rules (nothing else changes)."""
    return FONT_FACE.sub("", css)


class NhsukFrontendFinder(BaseFinder):
    """Finds nhsuk-frontend's files under static/nhsuk/, its CSS stripped of web fonts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source = Path(settings.NHSUK_FRONTEND)
        self.built = Path(settings.NHSUK_FRONTEND_BUILT)

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        return []

    def _build(self) -> None:
        for css in self.source.rglob("*.css"):
            target = self.built / css.relative_to(self.source)
            if target.exists() and target.stat().st_mtime >= css.stat().st_mtime:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(without_web_fonts(css.read_text(encoding="utf-8")), "utf-8")

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> Any:
        found: list[str] = []
        if path.startswith(f"{PREFIX}/"):
            relative = path.removeprefix(f"{PREFIX}/")
            if relative.endswith(".css"):
                self._build()
            full = (self.built if relative.endswith(".css") else self.source) / relative
            if full.is_file():
                found.append(str(full))
        if find_all or kwargs.get("all"):
            return found
        return found[0] if found else None

    def list(self, ignore_patterns: Any) -> Iterator[tuple[str, Storage]]:
        if not self.source.is_dir():
            return
        self._build()
        for root, wanted in ((self.source, False), (self.built, True)):
            storage = FileSystemStorage(location=str(root))
            storage.prefix = PREFIX  # type: ignore[attr-defined]
            for path in get_files(storage, ignore_patterns):
                if path.endswith(".css") == wanted:
                    yield path, storage
