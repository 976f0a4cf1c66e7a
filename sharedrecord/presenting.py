"""Documents as a record page opens them: the attachment decoded, HTML made safe.

Pure: no ORM and no access decisions (those are in access.py). What every
other resource shows is in the presentation package.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import nh3


@dataclass(frozen=True)
class Attachment:
    title: str
    content_type: str
    data: bytes | None  # None when the source holds it (url only)
    url: str


def attachment_of(resource: dict[str, Any]) -> Attachment | None:
    """The first attachment of a DocumentReference, decoded; None if it has none."""
    for content in resource.get("content", []) or []:
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if not isinstance(attachment, dict):
            continue
        data = None
        if isinstance(attachment.get("data"), str):
            try:
                data = base64.b64decode(attachment["data"], validate=True)
            except (binascii.Error, ValueError):
                data = None
        return Attachment(
            title=str(attachment.get("title") or "Document"),
            content_type=str(attachment.get("contentType") or "application/octet-stream")
            .split(";")[0]
            .strip()
            .lower(),
            data=data,
            url=str(attachment.get("url") or ""),
        )
    return None


# Tags a discharge letter needs; no scripts, styles, forms, frames or links out.
SAFE_TAGS = {
    "p", "br", "b", "strong", "i", "em", "u", "ul", "ol", "li", "table", "thead", "tbody",
    "tr", "th", "td", "h1", "h2", "h3", "h4", "h5", "h6", "div", "span", "pre", "blockquote",
    "dl", "dt", "dd", "hr", "caption", "sub", "sup",
}  # fmt: skip


def html_sanitise(markup: str) -> str:
    """Partner HTML made safe to show inside our page (nh3: no script, no links out)."""
    return nh3.clean(markup, tags=SAFE_TAGS, attributes={}, link_rel=None, strip_comments=True)


def document_text(attachment: Attachment) -> tuple[str, str]:
    """("html", safe markup) or ("text", plain text) for what a page can show inline."""
    if attachment.data is None:
        return "", ""
    text = attachment.data.decode("utf-8", errors="replace")
    if attachment.content_type in ("text/html", "application/xhtml+xml"):
        return "html", html_sanitise(text)
    if attachment.content_type.startswith("text/"):
        return "text", text
    return "", ""
