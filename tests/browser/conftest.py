"""Debian's chromium, driven by Playwright, against a live server on localhost."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

BASE_DIR = Path(__file__).resolve().parents[2]
AXE = BASE_DIR / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Playwright's sync API runs an event loop on the test's thread; the ORM calls
# the tests make around it are ordinary synchronous ones.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page; the test fails if anything the platform sent broke its own CSP, or if
    the page asked anything of a host other than the platform's own (fonts included)."""
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    opened = context.new_page()
    refused: list[str] = []
    elsewhere: list[str] = []

    def watch(text: str) -> None:
        if "Content Security Policy" in text:
            refused.append(text)

    def asked(url: str) -> None:
        host = urlsplit(url).hostname
        if urlsplit(url).scheme in ("http", "https") and host not in ("localhost", "127.0.0.1"):
            elsewhere.append(url)

    opened.on("console", lambda message: watch(message.text))
    opened.on("request", lambda request: asked(request.url))
    yield opened
    context.close()
    assert refused == [], refused
    assert elsewhere == [], elsewhere


def serious_accessibility_violations(page: Page) -> list[str]:
    """Run axe-core in the page; return the serious and critical violations (WCAG 2.2 AA)."""
    # Evaluated through the DevTools protocol, not as a <script> tag: the page's
    # Content-Security-Policy (rightly) refuses inline script.
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "() => axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21aa', 'wcag22aa']})"
    )
    return [
        f"{v['id']}: {v['help']}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.fixture(autouse=True, scope="session")
def static_files_served_as_in_production() -> Iterator[None]:
    """Let WhiteNoise serve /static/ (hashed names from collectstatic), as in production.

    pytest-django's live server otherwise puts Django's development static
    handler in front, which knows only unhashed names.
    """
    from django.contrib.staticfiles.handlers import StaticFilesHandler

    original = StaticFilesHandler._should_handle
    StaticFilesHandler._should_handle = lambda self, path: False  # type: ignore[method-assign]
    yield
    StaticFilesHandler._should_handle = original  # type: ignore[method-assign]
