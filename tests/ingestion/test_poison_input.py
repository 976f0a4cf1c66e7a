"""Poison input is refused at receipt, in the protocol's shape and audited: nothing is accepted
that the worker would then refuse (NUL and control characters, deep nesting, too many results)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from audit.models import AuditAction, AuditEvent
from ingestion.models import FeedMessage, MessageStatus
from ingestion.processing import feed_message_process
from ingestion.receiving import json_depth
from tests.factories import (
    deeply_nested_json,
    deeply_nested_xml,
    hl7_message,
    make_credential,
    make_organisation,
    next_nhs_number,
    small_bundle,
)
from tests.ingestion.conftest import FeedClient

pytestmark = pytest.mark.django_db
ER7 = "x-application/hl7-v2+er7"


def _issue(response) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    (issue,) = body["issue"]
    return dict(issue)


def _code(issue: dict[str, Any]) -> str:
    return str(issue["details"]["coding"][0]["code"])


def _rejections() -> list[dict[str, Any]]:
    return [e.detail for e in AuditEvent.objects.filter(action=AuditAction.FEED_REJECTED)]


# ---------------------------------------------------------------- FHIR: characters


@pytest.mark.parametrize(
    "char", ["\u0000", "\u0007", "\u001b", "\ud800"], ids=["nul", "bel", "esc", "surrogate"]
)
def test_a_control_character_or_lone_surrogate_in_a_string_is_refused_at_receipt(
    partner: FeedClient, char: str
) -> None:
    bundle = small_bundle(next_nhs_number())
    bundle["entry"][0]["resource"]["name"][0]["family"] = f"Smith{char}son"
    response = partner.post(json.dumps(bundle))
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    issue = _issue(response)
    assert _code(issue) == "invalid-character"
    assert issue["expression"] == ["Bundle.entry[0].resource.name[0].family"]
    assert "Smith" not in response.content.decode()
    assert not FeedMessage.objects.exists()
    (rejected,) = _rejections()
    assert rejected["code"] == "invalid-character"
    assert "Smith" not in json.dumps(rejected)


def test_a_nul_in_a_key_is_refused_too(partner: FeedClient) -> None:
    bundle = json.dumps(small_bundle(next_nhs_number()))
    bundle = bundle.replace('"gender"', '"gen\\u0000der"', 1)
    response = partner.post(bundle)
    assert response.status_code == 400
    assert _code(_issue(response)) == "invalid-character"
    assert not FeedMessage.objects.exists()


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul(partner: FeedClient) -> None:
    bundle = small_bundle(next_nhs_number())
    bundle["entry"][0]["resource"]["name"][0]["family"] = "Back\\u0000slash"
    response = partner.post(json.dumps(bundle))
    assert response.status_code == 202, response.content


def test_tab_carriage_return_and_line_feed_are_allowed_and_processed(
    partner: FeedClient,
) -> None:
    bundle = small_bundle(next_nhs_number())
    bundle["entry"][0]["resource"]["name"][0]["family"] = "Smith\tJones\r\nson"
    response = partner.post(json.dumps(bundle))
    assert response.status_code == 202, response.content
    message = FeedMessage.objects.get()
    assert feed_message_process(message_id=message.pk) == MessageStatus.DONE


# ---------------------------------------------------------------- FHIR: nesting


@pytest.mark.parametrize("depth", [600, 100_000])
def test_json_nested_too_deep_is_refused_at_receipt(
    partner: FeedClient, settings: SettingsWrapper, depth: int
) -> None:
    response = partner.post(deeply_nested_json(depth))
    assert response.status_code == 400, response.content[:300]
    issue = _issue(response)
    assert _code(issue) == "too-deep"
    assert str(settings.FEED_MAX_DEPTH) in issue["details"]["text"]
    assert not FeedMessage.objects.exists()
    assert [r["code"] for r in _rejections()] == ["too-deep"]


def test_brackets_inside_strings_do_not_count_as_nesting(partner: FeedClient) -> None:
    bundle = small_bundle(next_nhs_number())
    bundle["entry"][1]["resource"]["code"]["text"] = "[[[[{{{{" * 200
    response = partner.post(json.dumps(bundle))
    assert response.status_code == 202, response.content


def test_a_message_nested_to_the_limit_is_accepted_and_the_worker_finishes_it(
    partner: FeedClient, settings: SettingsWrapper
) -> None:
    deepest = deeply_nested_json(settings.FEED_MAX_DEPTH)
    assert json_depth(deepest) == settings.FEED_MAX_DEPTH
    response = partner.post(deepest)
    assert response.status_code == 202, response.content[:300]
    message = FeedMessage.objects.get()
    assert feed_message_process(message_id=message.pk) == MessageStatus.DONE


@pytest.mark.parametrize("depth", [120, 250])
def test_xml_nested_too_deep_is_refused_at_receipt(partner: FeedClient, depth: int) -> None:
    response = partner.post(deeply_nested_xml(depth), content_type="application/fhir+xml")
    assert response.status_code == 400, response.content[:300]
    assert _code(_issue(response)) == "too-deep"
    assert not FeedMessage.objects.exists()


def test_xml_nested_to_the_limit_is_accepted_and_the_worker_finishes_it(
    partner: FeedClient, settings: SettingsWrapper
) -> None:
    response = partner.post(
        deeply_nested_xml(settings.FEED_MAX_DEPTH), content_type="application/fhir+xml"
    )
    assert response.status_code == 202, response.content[:300]
    assert (
        partner.post(
            deeply_nested_xml(settings.FEED_MAX_DEPTH + 1).replace("deep", "deeper", 1),
            content_type="application/fhir+xml",
        ).status_code
        == 400
    )
    message = FeedMessage.objects.get()
    assert feed_message_process(message_id=message.pk) == MessageStatus.DONE


def test_an_unterminated_document_is_still_invalid_json_not_a_500(partner: FeedClient) -> None:
    response = partner.post('{"resourceType": "Bundle", "entry": [' + "[" * 5000)
    assert response.status_code == 400
    assert _code(_issue(response)) in {"invalid-json", "too-deep"}


def test_a_number_with_thousands_of_digits_is_a_400_not_a_500(partner: FeedClient) -> None:
    bundle = json.dumps(small_bundle(next_nhs_number()))
    bundle = bundle.replace(
        '"resourceType": "Bundle"', '"n": 1' + "0" * 5000 + ', "resourceType": "Bundle"', 1
    )
    response = partner.post(bundle)
    assert response.status_code == 400
    assert _code(_issue(response)) == "invalid-json"
    assert not FeedMessage.objects.exists()


def test_every_refusal_at_the_fhir_endpoint_is_audited(partner: FeedClient) -> None:
    response = partner.post('{"resourceType": "Patient", "id": "x"}')
    assert response.status_code == 400
    assert [r["code"] for r in _rejections()] == ["not-a-bundle"]


# ---------------------------------------------------------------- HL7 v2


def _hl7(client: Client, token: str, payload: str | bytes):
    data = payload.encode() if isinstance(payload, str) else payload
    return client.post(
        "/api/v1/feeds/hl7v2", data=data, content_type=ER7, HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def _segments(response) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for segment in filter(None, response.content.decode().split("\r")):
        fields = segment.split("|")
        out.setdefault(fields[0], []).append(fields)
    return out


@pytest.fixture
def hospital() -> tuple[Any, str]:
    return make_credential(make_organisation(ods_code="ZPO01", kind="acute"))


def test_a_nul_in_the_hl7_version_field_gets_an_audited_ar(client: Client, hospital) -> None:
    _, token = hospital
    text = hl7_message(next_nhs_number()).replace("|P|2.4", "|P|2.4\x00", 1)
    response = _hl7(client, token, text)
    assert response.status_code == 200
    segments = _segments(response)
    assert segments["MSA"][0][1] == "AR"
    (err,) = segments["ERR"]
    assert (err[2], err[3].split("^")[0]) == ("MSH^1^12", "102")
    assert "\x00" not in response.content.decode()
    assert not FeedMessage.objects.exists()
    (rejected,) = _rejections()
    assert rejected["location"] == "MSH^1^12"


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b"], ids=["nul", "bel", "esc"])
def test_a_control_character_in_an_hl7_field_gets_an_ar_naming_the_field(
    client: Client, hospital, char: str
) -> None:
    _, token = hospital
    text = hl7_message(next_nhs_number(), family=f"ELL{char}ISON")
    response = _hl7(client, token, text)
    segments = _segments(response)
    assert segments["MSA"][0][1] == "AR"
    assert [e[2] for e in segments["ERR"]] == ["PID^1^5"]
    assert "ELL" not in response.content.decode()
    assert not FeedMessage.objects.exists()
    assert [r["location"] for r in _rejections()] == ["PID^1^5"]


def test_an_hl7_hex_escape_that_decodes_to_a_control_character_is_refused(
    client: Client, hospital
) -> None:
    _, token = hospital
    text = hl7_message(next_nhs_number(), family="ELL\\X00\\ISON")
    response = _hl7(client, token, text)
    segments = _segments(response)
    assert segments["MSA"][0][1] == "AR"
    assert [e[2] for e in segments["ERR"]] == ["PID^1^5"]
    assert not FeedMessage.objects.exists()


def test_a_tab_in_an_hl7_text_field_is_accepted(client: Client, hospital) -> None:
    _, token = hospital
    response = _hl7(client, token, hl7_message(next_nhs_number(), family="ELL\tISON"))
    assert _segments(response)["MSA"][0][1] == "AA"


def test_an_hl7_message_with_more_results_than_the_limit_gets_an_ar(
    client: Client, hospital, settings: SettingsWrapper
) -> None:
    _, token = hospital
    settings.FEED_MAX_ENTRIES = 5
    number = next_nhs_number()
    results = "\r".join(f"OBX|{i}|NM|2345-7^Glucose^LN||{i}|mmol/L|||||F" for i in range(1, 9))
    text = (
        "MSH|^~\\&|LAB|ZPO01|SHAREDRECORD|BOROUGH|20261120101500||ORU^R01|L1|P|2.4\r"
        f"PID|1||{number}^^^NHS^NH||ELLISON^MARGARET||19410314|F\r"
        "OBR|1||R1|24323-8^Panel^LN|||20261120090000\r" + results + "\r"
    )
    response = _hl7(client, token, text)
    segments = _segments(response)
    assert segments["MSA"][0][1] == "AR", response.content
    assert "5" in segments["ERR"][0][8]
    assert not FeedMessage.objects.exists()
    assert len(_rejections()) == 1


def test_an_hl7_message_within_the_limit_is_accepted_and_processed(
    client: Client, hospital, settings: SettingsWrapper
) -> None:
    _, token = hospital
    settings.FEED_MAX_ENTRIES = 20
    number = next_nhs_number()
    results = "\r".join(f"OBX|{i}|NM|2345-7^Glucose^LN||{i}|mmol/L|||||F" for i in range(1, 9))
    text = (
        "MSH|^~\\&|LAB|ZPO01|SHAREDRECORD|BOROUGH|20261120101500||ORU^R01|L2|P|2.4\r"
        f"PID|1||{number}^^^NHS^NH||ELLISON^MARGARET||19410314|F\r"
        "OBR|1||R1|24323-8^Panel^LN|||20261120090000\r" + results + "\r"
    )
    response = _hl7(client, token, text)
    assert _segments(response)["MSA"][0][1] == "AA", response.content
    message = FeedMessage.objects.get()
    assert feed_message_process(message_id=message.pk) == MessageStatus.DONE
