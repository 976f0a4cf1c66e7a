"""The FHIR specification's own rules the parser enforces beyond structural validation.

Ids (`[A-Za-z0-9\\-.]{1,64}` on every resource, contained ones included, and on
meta.versionId), narrative XHTML (txt-1, txt-2 and the narrative page's
rules: a well-formed `div` in the XHTML namespace, only the allowed elements
and attributes, no script, event attributes or external references) and
extensions (a url, absolute at the top; exactly one of a value or nested
extensions: ext-1), plus where XML comments and processing instructions may
stand. A bad entry is an issue naming its index and FHIR path, never a value;
the rest of the batch is kept. Pure: no database.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ingestion.fhir.bundle import parse_bundle
from ingestion.fhir.results import EntryIssue, ParsedBundle
from ingestion.fhir.validation import validate_resource

XHTML = "http://www.w3.org/1999/xhtml"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def _issues(resource: dict[str, Any]) -> tuple[EntryIssue, ...]:
    return validate_resource(json.dumps(resource).encode(), "json")


def _codes(resource: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    return [(i.code, i.paths) for i in _issues(resource)]


def _patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", **fields}


def _narrative(div: str) -> dict[str, Any]:
    return _patient(text={"status": "generated", "div": div})


def _div(inner: str, attrs: str = "") -> str:
    return f'<div xmlns="{XHTML}"{attrs}>{inner}</div>'


def _bundle(*resources: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "resourceType": "Bundle",
            "id": "b1",
            "type": "collection",
            "entry": [
                {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}", "resource": r}
                for i, r in enumerate(resources)
            ],
        }
    ).encode()


def _parse(data: bytes, media: Any = "json") -> ParsedBundle:
    return parse_bundle(data, media, max_entries=100)


# ------------------------------------------------------------------ XML comments


XML_PATIENT = """<Patient xmlns="http://hl7.org/fhir">{0}<id value="p1"/>{0}
  <meta>{0}<versionId value="1"/></meta>
  <text><status value="generated"/>
    <div xmlns="http://www.w3.org/1999/xhtml">{1}<p>Margaret Ellison</p></div></text>
  <identifier>{0}<system value="https://fhir.nhs.uk/Id/nhs-number"/>{0}
    <value value="9990015007"/></identifier>
  <birthDate value="1941-03-14">{0}</birthDate>{0}
</Patient>"""


def _xml_bundle(resource_holder: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment before the root --><?xml-stylesheet href="bundle.xsl"?>
<Bundle xmlns="http://hl7.org/fhir"><!-- c --><id value="b1"/><type value="collection"/>
  <entry><!-- c --><fullUrl value="urn:uuid:00000000-0000-4000-8000-000000000001"/>
    <resource>{resource_holder}</resource><!-- c -->
  </entry>
</Bundle>""".encode()


@pytest.mark.parametrize(
    "holder",
    [
        "<!-- exported by the PAS -->" + XML_PATIENT.format("", ""),
        '<?pas-export version="2"?>' + XML_PATIENT.format("", ""),
        "<!-- a -->\n<?b c?>\n" + XML_PATIENT.format("<!-- in -->", "<!-- in -->") + "<!-- -->",
        XML_PATIENT.format("<?pi anywhere?>", ""),  # but not in the narrative: see below
    ],
    ids=["comment-before", "pi-before", "comments-everywhere", "pis-everywhere"],
)
def test_comments_and_processing_instructions_may_stand_anywhere_in_xml(holder: str) -> None:
    bundle = _parse(_xml_bundle(holder), "xml")
    assert bundle.issues == ()
    [entry] = bundle.entries
    assert entry.resource_type == "Patient"
    assert entry.resource["birthDate"] == "1941-03-14"
    assert entry.nhs_numbers == ("9990015007",)


def test_text_after_a_comment_is_still_stray_text() -> None:
    holder = XML_PATIENT.format("", "").replace(
        '<id value="p1"/>', '<id value="p1"/><!-- c -->oops'
    )
    bundle = _parse(_xml_bundle(holder), "xml")
    assert [(i.code, i.index) for i in bundle.issues] == [("xml-text", 0)]


def test_two_resources_in_one_resource_element_are_refused() -> None:
    holder = XML_PATIENT.format("", "") + XML_PATIENT.format("", "")
    bundle = _parse(_xml_bundle(holder), "xml")
    assert [(i.code, i.paths) for i in bundle.issues] == [
        ("invalid-resource", ("Bundle.entry[0].resource",))
    ]
    assert bundle.entries == ()


def test_only_a_comment_in_the_resource_element_is_no_resource() -> None:
    bundle = _parse(_xml_bundle("<!-- nothing here -->"), "xml")
    assert [i.code for i in bundle.issues] == ["missing-resource"]


# ------------------------------------------------------------------ ids


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        (_patient(id="a" * 65), "Patient.id"),
        (_patient(contained=[{"resourceType": "Practitioner", "id": "x" * 65}]),
         "Patient.contained[0].id"),
        (_patient(contained=[{"resourceType": "Practitioner", "id": "ok"},
                             {"resourceType": "Organization", "id": "o" * 100}]),
         "Patient.contained[1].id"),
        (_patient(meta={"versionId": "v" * 65}), "Patient.meta.versionId"),
        (_patient(contained=[{"resourceType": "Practitioner", "id": "ok",
                              "meta": {"versionId": "9" * 70}}]),
         "Patient.contained[0].meta.versionId"),
    ],
    ids=["root", "contained", "second-contained", "version-id", "contained-version-id"],
)  # fmt: skip
def test_every_id_follows_the_id_rule(resource: dict[str, Any], path: str) -> None:
    assert _codes(resource) == [("invalid-id", (path,))]


def test_ids_of_64_characters_pass() -> None:
    resource = _patient(
        id="a" * 64,
        meta={"versionId": "1.2-3"},
        contained=[{"resourceType": "Practitioner", "id": "B-2." + "c" * 60}],
    )
    assert _issues(resource) == ()


# ------------------------------------------------------------------ narrative


GOOD_DIVS = {
    "text": _div("Margaret Ellison, born 14 March 1941"),
    "table": _div(
        '<table border="1" cellpadding="2"><caption>Results</caption><thead><tr><th scope="col">'
        'Test</th></tr></thead><tbody><tr><td colspan="1" style="color: red">HbA1c</td></tr>'
        "</tbody></table>"
    ),
    "lists-and-inline": _div(
        "<h3>Summary</h3><ul><li><b>bold</b> <i>it</i> <code>c</code></li></ul><ol><li>x</li>"
        '</ol><dl><dt>t</dt><dd>d</dd></dl><pre>pre</pre><br/><hr/><span class="x">s</span>'
    ),
    "link": _div('See <a href="https://www.nhs.uk/conditions/" title="NHS">the NHS site</a>'),
    "anchor": _div(
        '<a name="top">Top</a> <a href="#top">back</a> <a href="mailto:x@y.nhs.uk">m</a>'
    ),
    "image-data": _div('<img src="data:image/png;base64,iVBORw0KGgo=" alt="chart"/>'),
    "image-contained": _div('<img src="#img1" alt="scan"/>'),
    "comment": _div("<!-- generated -->Text"),
    "language": _div("<p>Hello</p>", ' xml:lang="en-GB" lang="en-GB"'),
    "nested-xhtml-ns": _div(f'<p xmlns="{XHTML}">Text</p>'),
}


@pytest.mark.parametrize("div", GOOD_DIVS.values(), ids=GOOD_DIVS.keys())
def test_narrative_the_specification_allows_passes(div: str) -> None:
    assert _issues(_narrative(div)) == ()


BAD_DIVS: dict[str, tuple[str, str]] = {
    # txt-1 and the narrative page: structure
    "not-well-formed": ("invalid-narrative", _div("<p>open")),
    "html-entity": ("invalid-narrative", _div("a&nbsp;b")),
    "root-not-div": ("invalid-narrative", f'<p xmlns="{XHTML}">Text</p>'),
    "no-namespace": ("invalid-narrative", "<div>Text</div>"),
    "wrong-namespace": ("invalid-narrative", '<div xmlns="http://example.org/x">Text</div>'),
    "foreign-child": ("invalid-narrative", _div('<x:b xmlns:x="http://example.org/x">T</x:b>')),
    "text-around": ("invalid-narrative", "before " + _div("Text")),
    "two-roots": ("invalid-narrative", _div("a") + _div("b")),
    "empty": ("invalid-narrative", _div("  ")),  # txt-2
    "body": ("invalid-narrative", _div("<body>Text</body>")),
    "font": ("invalid-narrative", _div("<font>deprecated</font>")),
    "unknown-attribute": ("invalid-narrative", _div('<p data-x="1">Text</p>')),
    "xlink": ("invalid-narrative",
              _div('<a xmlns:xl="http://www.w3.org/1999/xlink" xl:href="#a">T</a>')),
    "processing-instruction": ("invalid-narrative", _div("<?php echo 1; ?>Text")),
    # active content
    "script": ("active-content", _div("<script>alert(1)</script>Text")),
    "script-cased": ("active-content", _div("<SCRIPT>alert(1)</SCRIPT>Text")),
    "iframe": ("active-content", _div('<iframe src="https://x.example"></iframe>Text')),
    "object": ("active-content", _div('<object data="x"></object>Text')),
    "style-element": ("active-content", _div("<style>p {}</style>Text")),
    "form": ("active-content", _div("<form><p>Text</p></form>")),
    "input": ("active-content", _div("Text <input/>")),
    "link-element": ("active-content", _div('<link rel="stylesheet" href="https://x/a.css"/>T')),
    "event-attribute": ("active-content", _div('<p onmouseover="go()">Text</p>')),
    "event-attribute-cased": ("active-content", _div('<p OnClick="go()">Text</p>')),
    "javascript-link": ("active-content", _div('<a href="javascript:go()">Text</a>')),
    "javascript-link-spaced": ("active-content", _div('<a href=" JavaScript:go()">Text</a>')),
    "vbscript-link": ("active-content", _div('<a href="vbscript:go">Text</a>')),
    "data-link": ("active-content", _div('<a href="data:text/html,x">Text</a>')),
    "style-expression": ("active-content", _div('<p style="width: expression(go())">T</p>')),
    # external references loaded without a click
    "external-image": ("external-reference", _div('<img src="https://tracker.example/p.gif"/>')),
    "relative-image": ("external-reference", _div('<img src="../p.gif" alt="x"/>')),
    "protocol-relative-image": ("external-reference", _div('<img src="//t.example/p.gif"/>')),
    "style-url": ("external-reference",
                  _div('<p style="background: url(https://t.example/p.gif)">T</p>')),
    "style-import": ("external-reference", _div('<p style="@import \'x.css\'">T</p>')),
    "data-image-not-image": ("external-reference", _div('<img src="data:text/html,x"/>')),
}  # fmt: skip


@pytest.mark.parametrize(("code", "div"), BAD_DIVS.values(), ids=BAD_DIVS.keys())
def test_narrative_the_specification_refuses_is_an_issue_without_values(
    code: str, div: str
) -> None:
    issues = _issues(_narrative(div))
    assert [(i.code, i.paths) for i in issues] == [(code, ("Patient.text.div",))]
    said = json.dumps([i.message for i in issues])
    for value in ("alert", "go()", "tracker", "echo", "deprecated", "t.example", "x.css"):
        assert value not in said


def test_a_contained_resources_narrative_is_checked_too() -> None:
    resource = _patient(
        contained=[{"resourceType": "Practitioner", "id": "gp",
                    "text": {"status": "generated", "div": _div('<img src="http://t.example/"/>')}}]
    )  # fmt: skip
    assert _codes(resource) == [("external-reference", ("Patient.contained[0].text.div",))]


def test_xml_narrative_is_held_to_the_same_rules() -> None:
    holder = XML_PATIENT.format("", "").replace(
        "<p>Margaret Ellison</p>", '<p>Margaret</p><img src="https://t.example/p.gif"/>'
    )
    bundle = _parse(_xml_bundle(holder), "xml")
    assert [(i.code, i.paths) for i in bundle.issues] == [
        ("external-reference", ("Patient.text.div",))
    ]
    with_pi = XML_PATIENT.format("", "<?php x?>")
    bundle = _parse(_xml_bundle(with_pi), "xml")
    assert [i.code for i in bundle.issues] == ["invalid-narrative"]


# ------------------------------------------------------------------ extensions


EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        (_patient(extension=[{"url": EXT}]), "Patient.extension[0]"),
        (_patient(extension=[{"url": EXT, "valueString": "x",
                              "extension": [{"url": "part", "valueString": "y"}]}]),
         "Patient.extension[0]"),
        (_patient(extension=[{"url": "ethnicCategory", "valueString": "x"}]),
         "Patient.extension[0].url"),
        (_patient(extension=[{"url": "/StructureDefinition/x", "valueString": "x"}]),
         "Patient.extension[0].url"),
        (_patient(modifierExtension=[{"url": "local", "valueBoolean": True}]),
         "Patient.modifierExtension[0].url"),
        (_patient(extension=[{"url": EXT, "extension": [{"url": "part"}]}]),
         "Patient.extension[0].extension[0]"),
        (_patient(name=[{"family": "Ellison", "extension": [{"url": "x", "valueString": "y"}]}]),
         "Patient.name[0].extension[0].url"),
        (_patient(birthDate="1941-03-14", _birthDate={"extension": [{"url": EXT}]}),
         "Patient._birthDate.extension[0]"),
        (_patient(contained=[{"resourceType": "Practitioner", "id": "gp",
                              "extension": [{"url": "rel", "valueString": "x"}]}]),
         "Patient.contained[0].extension[0].url"),
    ],
    ids=["no-value", "value-and-nested", "relative-url", "path-url", "modifier-relative",
         "nested-empty", "on-a-datatype", "on-a-primitive", "in-contained"],
)  # fmt: skip
def test_extensions_follow_ext_1_and_have_an_absolute_url(
    resource: dict[str, Any], path: str
) -> None:
    assert _codes(resource) == [("invalid-extension", (path,))]


def test_well_formed_extensions_pass() -> None:
    resource = _patient(
        birthDate="1941-03-14",
        _birthDate={"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                   "valueDateTime": "1941-03-14T08:00:00+00:00"}]},
        extension=[{"url": EXT, "extension": [
            {"url": "ethnicCategory", "valueCodeableConcept": {"text": "British"}},
            {"url": "text", "valueString": "British"}]}],
        modifierExtension=[{"url": "urn:oid:1.2.3", "valueBoolean": False}],
    )  # fmt: skip
    assert _issues(resource) == ()


# ------------------------------------------------------------------ per entry


def test_a_bad_entry_is_an_issue_and_the_rest_of_the_batch_is_kept() -> None:
    good = _patient(identifier=[{"system": NHS, "value": "9990015007"}])
    bad_narrative = _narrative(_div('<a href="javascript:steal()">x</a>')) | {"id": "p2"}
    bad_extension = _patient(id="p3", extension=[{"url": EXT}])
    bad_contained = _patient(id="p4", contained=[{"resourceType": "Practitioner", "id": "z" * 70}])
    bundle = _parse(_bundle(bad_narrative, good, bad_extension, bad_contained))
    assert [(i.index, i.code, i.paths) for i in bundle.issues] == [
        (0, "active-content", ("Patient.text.div",)),
        (2, "invalid-extension", ("Patient.extension[0]",)),
        (3, "invalid-id", ("Patient.contained[0].id",)),
    ]
    assert [e.source_id for e in bundle.entries] == ["p1"]
    assert "steal" not in repr(bundle.issues)


# ------------------------------------------------------------------ the JSON kept


def test_a_json_entry_is_kept_as_the_sender_wrote_it() -> None:
    sent = _patient(
        identifier=[{"system": NHS, "value": "9990015007"}],
        meta={"lastUpdated": "2025-01-02T10:00:00+00:00"},
        birthDate="1941-03-14",
    )
    (entry,) = _parse(_bundle(sent)).entries
    assert entry.data.resource == sent  # not the model's rewriting ("...Z")


def test_null_properties_are_left_out_and_the_rest_is_kept() -> None:
    sent = _patient(
        identifier=[{"system": NHS, "value": "9990015007", "period": None}], gender=None
    )
    (entry,) = _parse(_bundle(sent)).entries
    assert entry.data.resource == _patient(identifier=[{"system": NHS, "value": "9990015007"}])


def test_an_empty_value_is_reported_before_a_reversed_period_found_earlier() -> None:
    resource = _patient(
        identifier=[{"system": NHS, "value": "9990015007",
                     "period": {"start": "2025-02-01", "end": "2025-01-01"}}],
        name=[{"family": " "}],
    )  # fmt: skip
    assert [code for code, _ in _codes(resource)] == ["empty-value"]
    assert [code for code, _ in _codes(resource | {"name": [{"family": "E"}]})] == ["period-order"]
