"""FHIR narrative (Narrative.div) checks: the XHTML the rules allow, nothing active or fetched."""

from __future__ import annotations

import re

from lxml import etree

from ingestion.fhir.profile import XHTML_NS

# The narrative page of FHIR R4 and its invariants txt-1 and txt-2: an XHTML
# fragment, well-formed, whose root is a div in the XHTML namespace, holding
# only the basic formatting elements and attributes of HTML 4 (chapters 7-11
# and 15), links, images, tables and style attributes; no head or body,
# scripts, forms, frames, objects, event attributes, external stylesheets or
# other external references, and some text or an image. The lists are those
# of txt-1's XPath and of the HL7 Java validator (XhtmlValidator).

_NARRATIVE_ELEMENTS = frozenset({
    "a", "abbr", "acronym", "address", "b", "bdo", "big", "blockquote", "br", "caption",
    "cite", "code", "col", "colgroup", "dd", "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "li", "map", "area", "ol", "p", "pre", "q", "samp",
    "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead",
    "tr", "tt", "ul", "var", "kbd",
})  # fmt: skip
# Elements that run or fetch something: named "active content" in the issue.
_ACTIVE_ELEMENTS = frozenset({
    "script", "noscript", "iframe", "frame", "frameset", "object", "embed", "applet", "param",
    "form", "input", "button", "select", "option", "textarea", "label", "fieldset", "style",
    "link", "meta", "base", "svg", "math", "audio", "video", "source", "track", "canvas",
})  # fmt: skip
_NARRATIVE_ATTRIBUTES = frozenset({
    "title", "style", "class", "id", "lang", "xml:lang", "xml:space", "dir", "accesskey",
    "tabindex", "span", "width", "height", "align", "valign", "char", "charoff", "abbr",
    "axis", "headers", "scope", "rowspan", "colspan", "bgcolor", "border", "cellhalign",
    "cellpadding", "cellspacing", "cellvalign", "compact", "frame", "hspace", "vspace",
    "nowrap", "rules", "summary", "start", "value", "type",
})  # fmt: skip
_ELEMENT_ATTRIBUTES = {
    "a": frozenset({"href", "name", "charset", "hreflang", "rel", "rev", "shape", "coords"}),
    "area": frozenset({"href", "nohref", "alt", "shape", "coords"}),
    "img": frozenset({"src", "alt", "longdesc", "usemap", "ismap"}),
    "map": frozenset(["name"]),
    "blockquote": frozenset(["cite"]),
    "q": frozenset(["cite"]),
}
_LINK_ATTRIBUTES = frozenset(["href", "cite", "longdesc"])  # followed only on a click
_ACTIVE_SCHEMES = frozenset(["javascript", "vbscript", "data", "livescript", "mocha"])
_URL_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_IMAGE_DATA = re.compile(r"^data:image/[a-z0-9.+\-]+(;[a-z0-9=.\-]+)*(;base64)?,", re.IGNORECASE)
_STYLE_ACTIVE = re.compile(r"expression\s*\(|javascript:|behaviou?r\s*:|-moz-binding|\\", re.I)
_STYLE_URL = re.compile(r"url\s*\(\s*['\"]?\s*([^'\")\s]*)|@import|image-set\s*\(", re.I)
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_DIV_START = re.compile(r"^\s*<div[\s/>]")
_INVALID = "invalid-narrative"


def narrative_problem(div: str) -> tuple[str, str] | None:
    """What the FHIR narrative rules refuse in this div, as (code, message), or None.

    Codes: `invalid-narrative` (not the XHTML the rules allow), `active-content`
    (script, event attributes, javascript: and the like), `external-reference`
    (something a browser would fetch on its own: an image or stylesheet from
    elsewhere). Messages never quote the content.
    """
    if not _DIV_START.match(div):
        return _INVALID, "The narrative must be one XHTML div element (txt-1)."
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(div.encode("utf-8"), parser=parser)
    except etree.XMLSyntaxError:
        return _INVALID, (
            "The narrative is not well-formed XHTML (HTML entities such as &nbsp; are not "
            "XML: use the characters)."
        )
    if root.getprevious() is not None or root.getnext() is not None:
        return _INVALID, "The narrative must be one XHTML div element (txt-1)."
    if root.tag != f"{{{XHTML_NS}}}div":
        return _INVALID, "The narrative's root must be a div in the XHTML namespace."
    for node in root.iter():
        problem = _narrative_node_problem(node)
        if problem is not None:
            return problem
    text = str(root.xpath("normalize-space(string(.))"))
    if not text and root.find(f".//{{{XHTML_NS}}}img") is None:
        return _INVALID, "The narrative has no text or image (txt-2)."
    return None


def _narrative_node_problem(node: etree._Element) -> tuple[str, str] | None:
    if node.tag is etree.ProcessingInstruction:
        return _INVALID, "The narrative holds a processing instruction."
    if not isinstance(node.tag, str):
        return None  # a comment: allowed
    name = etree.QName(node)
    local = name.localname.lower()
    if local in _ACTIVE_ELEMENTS:
        return "active-content", "The narrative holds an element that runs or fetches content."
    if name.namespace != XHTML_NS or name.localname not in _NARRATIVE_ELEMENTS:
        return _INVALID, "The narrative holds an element the FHIR narrative rules do not allow."
    for attribute, value in node.attrib.items():
        qualified = etree.QName(attribute)
        key = qualified.localname
        if qualified.namespace == _XML_NS:
            key = f"xml:{key}"
        elif qualified.namespace is not None:
            return _INVALID, "The narrative holds an attribute the FHIR rules do not allow."
        if key.lower().startswith("on"):
            return "active-content", "The narrative holds an event attribute."
        if key not in _NARRATIVE_ATTRIBUTES and key not in _ELEMENT_ATTRIBUTES.get(local, ()):
            return _INVALID, "The narrative holds an attribute the FHIR rules do not allow."
        problem = _narrative_value_problem(local, key, value)
        if problem is not None:
            return problem
    return None


def _narrative_value_problem(element: str, attribute: str, value: str) -> tuple[str, str] | None:
    # Browsers ignore ASCII whitespace and control characters inside a URL's scheme.
    compact = re.sub(r"[\x00-\x20]", "", value).lower()
    scheme_match = _URL_SCHEME.match(compact)
    scheme = scheme_match.group(1) if scheme_match else ""
    if attribute in _LINK_ATTRIBUTES and scheme in _ACTIVE_SCHEMES:
        return "active-content", "The narrative holds a script or data link."
    if attribute == "src" and scheme in _ACTIVE_SCHEMES - {"data"}:
        return "active-content", "The narrative holds a script link."
    if element == "img" and attribute in ("src", "usemap"):
        inline = _IMAGE_DATA.match(compact) is not None or compact.startswith("#")
        if not inline:
            return "external-reference", (
                "A narrative image must be inline (a data: URL) or a contained resource "
                "(#id), never fetched from elsewhere."
            )
    if attribute == "style":
        if _STYLE_ACTIVE.search(value):
            return "active-content", "A style attribute holds script or an escape."
        for match in _STYLE_URL.finditer(value):
            target = (match.group(1) or "").lower()
            if not (target.startswith("#") or _IMAGE_DATA.match(target)):
                return "external-reference", "A style attribute refers to something elsewhere."
    return None
