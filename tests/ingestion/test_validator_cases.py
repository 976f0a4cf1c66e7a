"""The FHIR validator's own test cases, and what our feed says of each.

The HL7 Java validator's verdicts (valid/ or invalid/) come with the fixtures.
Structural validation (fhir.resources) plus our own rules reproduce most of
them; the rest need terminology, profiles or extension definitions, which a
structural check does not have. Each case's expected answer is listed, so a
change in any verdict is seen. The score is in the README.
"""

from __future__ import annotations

import json
from typing import Literal

import pytest

from ingestion.fhir.bundle import parse_bundle
from ingestion.fhir.results import FeedRejected
from ingestion.fhir.validation import validate_resource
from tests.factories import BASE_DIR, EXTERNAL

CASES = EXTERNAL / "fhir-test-cases-validator"

# file -> the first error code we answer with, or None when we accept it.
EXPECTED: dict[str, str | None] = {
    "invalid/Observation-ex-pain.json": "invalid-resource",
    "invalid/Observation-ex-pain.xml": "invalid-resource",
    "valid/ai1.json": None,
    "invalid/ai3.json": "invalid-resource",
    "invalid/ai4.json": "invalid-resource",
    "invalid/allergy.json": None,  # needs terminology (required binding)
    "invalid/bad-json-close-2.json": "invalid-json",
    "invalid/bad-json-close-3.json": "invalid-json",
    "valid/binary-ref-internal.xml": None,
    "valid/bnd-ambiguous-refs.xml": "unsupported-type",  # a type the record does not hold
    "invalid/bundle-dual-target.xml": "unsupported-bundle-type",
    "invalid/bundle-duplicate-id.json": "relative-fullurl",
    "invalid/bundle-duplicate-ids-not.json": "unsupported-bundle-type",
    "invalid/bundle-ea-testcase.json": "unsupported-type",
    "valid/bundle-explicit-version.xml": "missing-id",  # a feed entry needs its source id
    "invalid/bundle-id-collection.json": "missing-id",
    "valid/bundle-id-search-1.json": "unsupported-bundle-type",  # a searchset is not a feed message
    "invalid/bundle-id-search-2.json": "unsupported-bundle-type",
    "invalid/bundle-with-contained.json": "unsupported-type",
    "valid/care-plan.json": None,
    "valid/containedToContainer.xml": None,
    "invalid/document-css.xml": "unsupported-bundle-type",
    "valid/dr-example-org-2.json": None,
    "invalid/dr-example-org.json": None,  # example-URL policy not enforced
    "valid/dr-xml-space.xml": None,
    "invalid/empty-array.json": "empty-value",
    "invalid/encounter-period.json": "period-order",
    "valid/filter-display-error-with-path-observation.json": None,
    "valid/filter-invalid-display-instance.json": None,
    "invalid/hakan-se.json": "invalid-resource",
    "valid/icd-9-condition.xml": None,
    "invalid/json-comments.json": "invalid-resource",
    "valid/json-good.json": None,
    "valid/list-bad-reference.xml": None,
    "invalid/message-empty-entry.xml": "missing-id",
    "invalid/message.xml": "missing-id",
    "invalid/mni-patientOverview-bundle-example1.json": "unsupported-bundle-type",
    "invalid/mni-patientOverview-bundle-example1b.json": "unsupported-bundle-type",
    "invalid/obs-quantity.json": "invalid-resource",
    "invalid/obs-temp-bad.json": None,  # needs the vital-signs profile
    "invalid/obs-temp-code2.json": None,  # needs terminology (unknown SNOMED code)
    "valid/obs-temp.json": None,
    "valid/obs-vital-signs-mdc.json": None,
    "invalid/obs-vs-2.json": "invalid-resource",
    # Needs terminology (UCUM) and the blood-pressure profile. It was refused until
    # comments could stand anywhere in XML: for the comment, not the validator's reason.
    "invalid/observation-ucum.xml": None,
    "invalid/pat-dob-ext.json": None,  # needs extension definitions
    "invalid/pat-example-ext.json": None,  # needs extension definitions
    "invalid/pat-security-bad-string.json": "active-content",
    "invalid/pat-security-bad-string1.xml": "active-content",
    "invalid/pat-security-bad-string2.xml": "xml-text",
    "invalid/pat-security-bad-xhtml.json": "active-content",
    "valid/pat-security-good1.json": None,
    "valid/pat-security-good2.json": "active-content",  # stricter on purpose: no script in any string
    "valid/pat-security-good3.json": None,
    "valid/patient-animal.xml": None,
    "valid/patient-example-ra4.json": None,
    "invalid/patient-extension-bad2.xml": "empty-value",
    "invalid/patient-extension-bad3.xml": "invalid-resource",
    "valid/patient-extension-complex.xml": None,
    "valid/patient-extension-simple.xml": None,
    "invalid/patient-id-bad-2.json": "invalid-resource",
    "invalid/patient-id-bad-3.json": "invalid-id",
    "invalid/patient-id-only.xml": "empty-value",
    "invalid/relative_reference_to_TYPE_ID.all_fullUrl_UUID.xml": "unsupported-bundle-type",
    "invalid/relative_reference_to_fullUrl.id_in_target_resource.xml": "unsupported-bundle-type",
    "valid/sct-version-issue.json": None,
    "valid/snomed-ca.json": None,
    "invalid/versioned-extension.json": "invalid-resource",
    "valid/xhtml-ctrl-mixed-lang.xml": None,
    "invalid/xml-bad-entities.xml": "invalid-xml",
    "invalid/xml-fail.xml": "unsupported-type",
}
# Invalid cases we refuse only because they are not feed messages (documents,
# search results) or hold types the record does not keep, not for the
# validator's reason: counted apart in the score.
REFUSED_AS_FEED = {"unsupported-bundle-type", "unsupported-type"}


def _verdict(case: dict[str, str]) -> str | None:
    path = CASES / case["file"]
    media: Literal["json", "xml"] = "xml" if path.suffix == ".xml" else "json"
    try:
        if case["resourceType"] == "Bundle":
            bundle = parse_bundle(path.read_bytes(), media, max_entries=5000)
            codes = [i.code for i in bundle.issues if i.severity == "error"]
        else:
            codes = [i.code for i in validate_resource(path.read_bytes(), media)]
    except FeedRejected as rejected:
        codes = [rejected.code]
    return codes[0] if codes else None


def _cases() -> list[dict[str, str]]:
    return list(json.loads((CASES / "expected-outcomes.json").read_text())["cases"])


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["file"])
def test_each_validator_case_gets_its_expected_answer(case: dict[str, str]) -> None:
    assert _verdict(case) == EXPECTED[case["file"]]


def test_the_score_in_the_readme_is_the_score_we_get() -> None:
    verdicts = {case["file"]: _verdict(case) for case in _cases()}
    invalid = [v for f, v in verdicts.items() if f.startswith("invalid/")]
    valid = [v for f, v in verdicts.items() if f.startswith("valid/")]
    own_reason = sum(v not in (None, *REFUSED_AS_FEED) for v in invalid)
    as_feed = sum(v in REFUSED_AS_FEED for v in invalid)
    accepted = sum(v is None for v in valid)
    readme = " ".join((BASE_DIR / "README.md").read_text().split())
    assert (
        f"of {len(invalid)} invalid cases we reject {own_reason + as_feed}: {own_reason} for "
        f"the validator's own reason" in readme
    )
    assert f"and {as_feed} because they are not feed content" in readme
    assert f"We accept {len(invalid) - own_reason - as_feed} whose errors need" in readme
    assert f"Of {len(valid)} valid cases we accept {accepted};" in readme
