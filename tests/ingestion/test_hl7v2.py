"""HL7 v2 over HTTP: ACKs for everything, and the same record entries a FHIR feed makes."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest
from django.test import Client

from audit.models import AuditAction, AuditEvent
from ingestion.hl7v2.convert import convert
from ingestion.hl7v2.results import Merge
from ingestion.models import FeedMessage, MatchQueueItem
from ingestion.processing import feed_message_process
from sharedrecord.models import Entry, Organisation, Patient
from tests.factories import (
    HL7_DIRS,
    hl7_fixture,
    hl7_message,
    hl7_with_control_id,
    hl7_with_nhs_number,
    make_credential,
    make_organisation,
    next_nhs_number,
)

pytestmark = pytest.mark.django_db
ER7 = "x-application/hl7-v2+er7"
# The sample files whose type we take, and those we answer with a precise AR.
SUPPORTED = {
    "ADT-A01-01.hl7", "ADT-A01-02.hl7", "ADT-A02-01.hl7", "ADT-A03-01.hl7", "ADT-A04-01.hl7",
    "ADT-A05-01.hl7", "ADT-A08-01.hl7", "ADT-A11-01.hl7", "ADT-A13-01.hl7", "ADT-A28-01.hl7",
    "ADT-A31-01.hl7", "ADT-A40-01.hl7", "ADT01-23.hl7", "ADT04-251.hl7", "ADT04-28.hl7",
    "LAB-ORU-1.hl7", "LRI_2.0-NG_CBC_Typ_Message.hl7", "MDM-T02-01.hl7", "MDM-T02-03.hl7",
    "ORU-R01-01.hl7", "ORU-R01-RMGEAD.hl7", "SIU-S12-01.hl7",
    "valid/002_CA_ORU_R01.hl7", "valid/002_Epic_ORU_R01.hl7", "valid/002_TX_ORU_R01.hl7",
    "valid/003_CA_ORU_R01_CDPH_produced_0_initial_message.hl7",
    "valid/004_CA_ORU_R01_leading_zeroes.hl7", "valid/004_Oracle_ORU_R01.hl7",
    "valid/005_MN_ADT_A01.hl7", "valid/008_ORU_R01_micro_character_encoding.hl7",
}  # fmt: skip
# Content the standard does not allow, reported in ERR while the rest is kept.
EXPECTED_AE = {
    "valid/002_Epic_ORU_R01.hl7": "PID^1^7",  # PID-7 is the placeholder text "DOB"
    "ORU-R01-01.hl7": "OBX^2^3",  # an ED result with no OBX-3
}
# The simulator's MDM carries a (synthetic, valid) NHS number in PID-3 already.
CARRIES_NHS_NUMBER = {"MDM-T02-03.hl7"}
UNSUPPORTED = {
    "ADT-A47-01.hl7": "201", "ADT-A60-01.hl7": "201", "IZ_1_1.1_Admin_Child_Max_Message.hl7": "200",
    "OML-O21-01.hl7": "200", "ORM-O01-01.hl7": "200", "PC1-Problem-Add-v2.3.1.hl7": "200",
    "RDE-O11-01.hl7": "200", "REF-I12-01.hl7": "200", "VXU-V04-01.hl7": "200", "VXU.hl7": "200",
    "valid/001_Natus_ACK.hl7": "200",
}  # fmt: skip
INVALID = {
    "invalid/empty.hl7": ("100", ""),
    "invalid/msh_present_but_missing_all_fields.hl7": ("101", "MSH^1^2"),
    "invalid/msh_present_but_missing_msh-2.hl7": ("101", "MSH^1^2"),
    "invalid/msh_present_but_missing_msh-9.hl7": ("101", "MSH^1^9"),
    "invalid/msh_present_but_missing_msh-10.hl7": ("101", "MSH^1^10"),
    # Orders are not record content: refused for their type before their other faults.
    "invalid/orm_obx-5_is_not_a_numeric_value.hl7": ("200", "MSH^1^9"),
    "invalid/011_AL_ORM_O01_malformed_DTM_datatype_0_initial_message.hl7": ("200", "MSH^1^9"),
    "invalid/012_AL_ORM_O01_malformed_XAD_datatype_0_initial_message.hl7": ("200", "MSH^1^9"),
}


def test_every_sample_file_is_classified() -> None:
    names = set()
    for folder in HL7_DIRS:
        for path in folder.rglob("*.hl7"):
            names.add(str(path.relative_to(folder)))
    assert names == SUPPORTED | set(UNSUPPORTED) | set(INVALID)


@pytest.fixture
def hospital():
    organisation = Organisation.objects.filter(ods_code="ZAC01").first() or make_organisation(
        ods_code="ZAC01", name="Borough General Hospital", kind="acute"
    )
    return make_credential(organisation)


def _post(client: Client, token: str, payload: bytes):
    return client.post(
        "/api/v1/feeds/hl7v2", data=payload, content_type=ER7,
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip


def _segments(response) -> dict[str, list[list[str]]]:
    text = response.content.decode()
    out: dict[str, list[list[str]]] = {}
    for segment in filter(None, text.split("\r")):
        fields = segment.split("|")
        out.setdefault(fields[0], []).append(fields)
    return out


def _msa(response) -> str:
    return _segments(response)["MSA"][0][1]


def _errors(response) -> list[tuple[str, str]]:
    return [(e[2], e[3].split("^")[0]) for e in _segments(response).get("ERR", [])]


def _process_last() -> FeedMessage:
    message = FeedMessage.objects.order_by("-id").first()
    assert message is not None
    feed_message_process(message_id=message.pk)
    message.refresh_from_db()
    return message


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_each_supported_sample_is_accepted_parked_as_sent_and_filed_with_an_nhs_number(
    client: Client, hospital, name: str
) -> None:
    _, token = hospital
    raw = hl7_fixture(name)
    as_sent = _post(client, token, raw)
    assert as_sent.status_code == 200
    expected = "AE" if name in EXPECTED_AE else "AA"
    assert _msa(as_sent) == expected, _errors(as_sent)
    if name in EXPECTED_AE:
        assert EXPECTED_AE[name] in [where for where, _ in _errors(as_sent)]
    processed = _process_last()
    assert processed.status == "done", processed.issues
    if name in CARRIES_NHS_NUMBER:
        assert processed.counts["created"] >= 1
        return
    assert processed.counts["created"] == 0  # US identifiers only: parked, never guessed
    assert processed.counts["parked"] >= 1
    assert MatchQueueItem.objects.filter(message=processed).exists()

    number = next_nhs_number()
    uk = hl7_with_nhs_number(raw, number)
    # A new control id: the same MSH-10 with different content is a different message.
    uk = hl7_with_control_id(uk, f"uk-{number}")
    answer = _post(client, token, uk)
    assert _msa(answer) == expected
    filed = _process_last()
    assert filed.status == "done", filed.issues
    entries = Entry.objects.filter(patient__nhs_number=number)
    if "A40" not in name:
        assert entries.filter(resource_type="Patient").count() == 1
    assert set(entries.values_list("source_org__ods_code", flat=True)) <= {"ZAC01"}
    assert filed.counts["rejected"] == 0, filed.issues
    if "ORU" in name or "LAB" in name or "LRI" in name:
        assert entries.filter(resource_type__in=["Observation", "DiagnosticReport"]).exists()
    if "MDM" in name:
        assert entries.filter(resource_type="DocumentReference").exists()
    if "SIU" in name:
        assert entries.filter(resource_type="Appointment").exists()


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_each_unsupported_sample_gets_a_precise_ar_and_nothing_is_stored(
    client: Client, hospital, name: str
) -> None:
    _, token = hospital
    response = _post(client, token, hl7_fixture(name))
    assert _msa(response) == "AR"
    assert _errors(response) == [("MSH^1^9", UNSUPPORTED[name])]
    assert not FeedMessage.objects.exists()
    event = AuditEvent.objects.get(action=AuditAction.FEED_REJECTED)
    assert event.detail["code"] == UNSUPPORTED[name]


@pytest.mark.parametrize("name", sorted(INVALID))
def test_each_malformed_sample_gets_the_right_ar(client: Client, hospital, name: str) -> None:
    _, token = hospital
    response = _post(client, token, hl7_fixture(name))
    assert _msa(response) == "AR"
    code, where = INVALID[name]
    assert _errors(response) == [(where, code)]
    assert not FeedMessage.objects.exists()


def test_an_admission_builds_the_same_record_a_fhir_feed_would(client: Client, hospital) -> None:
    _, token = hospital
    number = next_nhs_number()
    answer = _post(client, token, hl7_message(number, control_id="a01").encode())
    assert (answer.status_code, _msa(answer), _errors(answer)) == (200, "AA", [])
    ack = _segments(answer)
    assert ack["MSA"][0][2] == "a01"
    assert ack["MSH"][0][8] == "ACK^A01^ACK"
    _process_last()
    patient = Patient.objects.get(nhs_number=number)
    assert (patient.family_name, patient.given_names, str(patient.birth_date)) == (
        "ELLISON", "MARGARET", "1941-03-14",
    )  # fmt: skip
    # The hospital's PD1 names a practice, but a hospital does not assert registration:
    # it stays in the hospital's Patient entry and moves nothing.
    assert patient.registered_gp_ods == ""
    pd1 = Entry.objects.get(patient=patient, resource_type="Patient").resource
    assert pd1["generalPractitioner"][0]["identifier"]["value"] == "Z81001"
    encounter = Entry.objects.get(patient=patient, resource_type="Encounter")
    assert encounter.resource["status"] == "in-progress"
    assert encounter.resource["class"]["code"] == "EMER"
    assert encounter.section == "encounters"

    _post(client, token, hl7_message(number, control_id="a03", event="A03").encode())
    _process_last()
    encounter = Entry.objects.get(patient=patient, resource_type="Encounter")
    assert encounter.resource["status"] == "finished"
    assert encounter.resource["period"]["end"].startswith("2026-11-20T16:00:00")

    _post(client, token, hl7_message(number, control_id="a11", event="A11").encode())
    cancelled = _process_last()
    assert cancelled.counts["deleted"] == 1
    assert not Entry.objects.filter(patient=patient, resource_type="Encounter").exists()


def test_a_redelivered_control_id_is_idempotent_and_a_reused_one_is_refused(
    client: Client, hospital
) -> None:
    _, token = hospital
    number = next_nhs_number()
    first = _post(client, token, hl7_message(number, control_id="dup").encode())
    again = _post(client, token, hl7_message(number, control_id="dup").encode())
    assert _msa(first) == _msa(again) == "AA"
    assert FeedMessage.objects.count() == 1
    reused = _post(client, token, hl7_message(number, control_id="dup", family="OTHER").encode())
    assert _msa(reused) == "AR"
    assert _errors(reused) == [("MSH^1^10", "205")]
    assert FeedMessage.objects.count() == 1


def test_results_keep_values_units_ranges_flags_and_text_reports(client: Client, hospital) -> None:
    _, token = hospital
    number = next_nhs_number()
    oru = hl7_message(number, control_id="oru1").replace("ADT^A01", "ORU^R01").replace(
        "PV1|", "ZZZ|ignored\rPV1|", 1
    ) + "\r".join([
        "OBR|1|P1|F77^LAB|HBA1C^HbA1c panel^L|||20261119083000",
        "OBX|1|NM|1049301000000100^HbA1c level^SCT||58|mmol/mol|20-48|H|||F|||20261119083000",
        "OBX|2|SN|GLU^Glucose^L||<^3.1|mmol/L|3.5-7.0|L|||F",
        "OBR|2|P2|F78^RAD|CXR^Chest X-ray^L|||20261119090000",
        "OBX|1|TX|CXR^Report^L||No consolidation.~Heart size normal.||||||F",
    ]) + "\r"  # fmt: skip
    assert _msa(_post(client, token, oru.encode())) == "AA"
    _process_last()
    entries = Entry.objects.filter(patient__nhs_number=number)
    hba1c = entries.get(resource_type="Observation", code="1049301000000100").resource
    assert hba1c["valueQuantity"] == {"value": 58, "unit": "mmol/mol"}
    assert hba1c["referenceRange"][0]["low"]["value"] == 20.0
    assert hba1c["interpretation"][0]["coding"][0]["code"] == "H"
    glucose = entries.get(resource_type="Observation", code="GLU").resource
    assert glucose["valueQuantity"]["comparator"] == "<"
    xray = entries.get(resource_type="DiagnosticReport", code="CXR").resource
    text = base64.b64decode(xray["presentedForm"][0]["data"]).decode()
    assert text == "No consolidation.\nHeart size normal."
    panel = entries.get(resource_type="DiagnosticReport", code="HBA1C").resource
    assert len(panel["result"]) == 2


def test_appointments_are_booked_and_cancelled(client: Client, hospital) -> None:
    _, token = hospital
    number = next_nhs_number()
    siu = "\r".join([
        "MSH|^~\\&|PAS|ZAC01|SR|B|20261120101500||SIU^S12|s12|P|2.5",
        "SCH|PL1|APPT77||||||FOLLOWUP^Follow-up^L|30|min|^^30^20261201093000^20261201100000",
        f"PID|1||{number}^^^NHS^NH||ELLISON^MARGARET||19410314|F",
        "AIS|1||CARD^Cardiology clinic^L|20261201093000",
    ]) + "\r"  # fmt: skip
    assert _msa(_post(client, token, siu.encode())) == "AA"
    _process_last()
    appointment = Entry.objects.get(patient__nhs_number=number, resource_type="Appointment")
    assert appointment.resource["status"] == "booked"
    assert appointment.resource["start"].startswith("2026-12-01T09:30:00")
    cancel = siu.replace("SIU^S12|s12", "SIU^S15|s15")
    assert _msa(_post(client, token, cancel.encode())) == "AA"
    _process_last()
    appointment.refresh_from_db()
    assert appointment.resource["status"] == "cancelled"


def test_a_discharge_letter_arrives_as_a_document(client: Client, hospital) -> None:
    _, token = hospital
    number = next_nhs_number()
    mdm = "\r".join([
        "MSH|^~\\&|EPR|ZAC01|SR|B|20261120101500||MDM^T02|t02|P|2.5",
        "EVN|T02|20261120101500",
        f"PID|1||{number}^^^NHS^NH||ELLISON^MARGARET||19410314|F",
        "PV1|1|I|WARD7||||||||||||||||V77",
        "TXA|1|DS|TX|20261120100000||||||||DOC-55||||||AU",
        "OBX|1|TX|DS^Discharge summary^L||Admitted with chest pain.",
        "OBX|2|TX|DS^Discharge summary^L||Discharged home \\T\\ well.",
    ]) + "\r"  # fmt: skip
    assert _msa(_post(client, token, mdm.encode())) == "AA"
    _process_last()
    document = Entry.objects.get(patient__nhs_number=number, resource_type="DocumentReference")
    attachment = document.resource["content"][0]["attachment"]
    assert base64.b64decode(attachment["data"]).decode() == (
        "Admitted with chest pain.\nDischarged home & well."
    )
    assert document.resource["type"]["text"] == "Discharge summary"
    assert document.section == "documents"


def test_a_merge_moves_the_senders_entries_to_the_surviving_person(
    client: Client, hospital
) -> None:
    _, token = hospital
    old, new = next_nhs_number(), next_nhs_number()
    _post(client, token, hl7_message(old, control_id="m1", visit="V9").encode())
    _process_last()
    assert Entry.objects.filter(patient__nhs_number=old, resource_type="Encounter").exists()
    a40 = "\r".join([
        "MSH|^~\\&|PAS|ZAC01|SR|B|20261120111500||ADT^A40|m2|P|2.4",
        "EVN|A40|20261120111500",
        f"PID|1||{new}^^^NHS^NH~MV1^^^ZAC01^MR||ELLISON^MARGARET||19410314|F",
        f"MRG|{old}^^^NHS^NH~MV9^^^ZAC01^MR",
    ]) + "\r"  # fmt: skip
    assert _msa(_post(client, token, a40.encode())) == "AA"
    merged = _process_last()
    assert merged.counts["merged"] >= 1
    assert Entry.objects.filter(patient__nhs_number=new, resource_type="Encounter").exists()
    assert not Patient.objects.filter(nhs_number=old).exists()
    event = AuditEvent.objects.get(action=AuditAction.MATCH_DECISION, detail__decision="merged")
    assert event.nhs_number == new
    assert event.detail["merged_nhs_number"] == old


# ------------------------------------------------------------------ bad input


def _body(client: Client, token: str, text: str, encoding: str = "utf-8"):
    return _post(client, token, text.encode(encoding))


def test_a_message_without_msh_is_refused(client: Client, hospital) -> None:
    _, token = hospital
    response = _body(client, token, "PID|1||9990015007^^^NHS^NH\r")
    assert (_msa(response), _errors(response)) == ("AR", [("", "100")])


def test_a_wrong_field_separator_is_refused(client: Client, hospital) -> None:
    _, token = hospital
    response = _body(client, token, hl7_message(next_nhs_number()).replace("|", "A"))
    assert (_msa(response), _errors(response)) == ("AR", [("MSH^1^1", "102")])


def test_a_truncated_message_is_refused_and_loses_nothing_else(client: Client, hospital) -> None:
    _, token = hospital
    number = next_nhs_number()
    full = hl7_message(number, control_id="t1")
    response = _body(client, token, full[:50])
    assert (_msa(response), _errors(response)) == ("AR", [("MSH^1^9", "101")])
    assert _msa(_body(client, token, full)) == "AA"
    assert FeedMessage.objects.count() == 1


def test_a_message_cut_off_before_pid_is_refused(client: Client, hospital) -> None:
    _, token = hospital
    text = hl7_message(next_nhs_number(), control_id="t2").split("\rPID")[0]
    response = _body(client, token, text)
    assert (_msa(response), _errors(response)) == ("AR", [("PID^1^0", "100")])


def test_bad_dates_are_named_and_the_rest_is_kept(client: Client, hospital) -> None:
    _, token = hospital
    number = next_nhs_number()
    text = hl7_message(number, control_id="d1", birth="19411341").replace(
        "20261120094500", "2026112X"
    )
    response = _body(client, token, text)
    assert _msa(response) == "AE"
    assert set(_errors(response)) == {("PID^1^7", "102"), ("PV1^1^44", "102")}
    _process_last()
    patient = Patient.objects.get(nhs_number=number)
    assert patient.birth_date is None
    assert patient.family_name == "ELLISON"
    assert Entry.objects.filter(patient=patient, resource_type="Encounter").exists()


def test_an_unknown_event_type_is_refused(client: Client, hospital) -> None:
    _, token = hospital
    response = _body(client, token, hl7_message(next_nhs_number(), event="A99"))
    assert (_msa(response), _errors(response)) == ("AR", [("MSH^1^9", "201")])


def test_an_invalid_nhs_number_is_named_and_parked_not_guessed(client: Client, hospital) -> None:
    _, token = hospital
    response = _body(client, token, hl7_message("9990015008", control_id="bad-nhs"))
    assert _msa(response) == "AE"
    assert _errors(response) == [("PID^1^3", "102")]
    processed = _process_last()
    assert processed.counts["parked"] >= 1
    assert not Patient.objects.exists()
    assert "9990015008" not in response.content.decode()  # no personal data in the answer


def test_huge_obx_text_is_refused_alone(client: Client, hospital, settings) -> None:
    _, token = hospital
    number = next_nhs_number()
    huge = "X" * 1_100_000
    text = hl7_message(number, control_id="huge").replace("ADT^A01", "ORU^R01") + "\r".join([
        "OBR|1|P1|F1|NOTE^Note^L|||20261119083000",
        f"OBX|1|TX|NOTE^Note^L||{huge}||||||F",
        "OBX|2|NM|HB^Haemoglobin^L||131|g/L|115-165||||F",
    ]) + "\r"  # fmt: skip
    response = _body(client, token, text)
    assert _msa(response) == "AE"
    assert _errors(response) == [("OBX^1^5", "102")]
    assert len(response.content) < 2000
    _process_last()
    assert Entry.objects.filter(patient__nhs_number=number, code="HB").exists()


@pytest.mark.parametrize(
    ("encoding", "charset"),
    [("utf-8", "UNICODE UTF-8"), ("latin-1", "8859/1"), ("utf-8", ""), ("cp1252", "")],
)
def test_non_ascii_names_arrive_intact_in_each_encoding(
    client: Client, hospital, encoding: str, charset: str
) -> None:
    _, token = hospital
    number = next_nhs_number()
    text = hl7_message(number, control_id=f"enc-{encoding}-{charset}", family="NÚÑEZ-BJÖRK",
                       given="ZOË", charset=charset)  # fmt: skip
    assert _msa(_body(client, token, text, encoding)) == "AA"
    _process_last()
    patient = Patient.objects.get(nhs_number=number)
    assert (patient.family_name, patient.given_names) == ("NÚÑEZ-BJÖRK", "ZOË")


def test_bom_and_lf_or_crlf_segment_ends_are_taken(client: Client, hospital) -> None:
    _, token = hospital
    for i, ending in enumerate(("\n", "\r\n")):
        number = next_nhs_number()
        text = hl7_message(number, control_id=f"end{i}").replace("\r", ending)
        assert _msa(_post(client, token, b"\xef\xbb\xbf" + text.encode())) == "AA"
        _process_last()
        assert Patient.objects.filter(nhs_number=number).exists()


def test_the_endpoint_needs_a_live_token_and_the_right_content_type(
    client: Client, hospital
) -> None:
    _, token = hospital
    text = hl7_message(next_nhs_number()).encode()
    unauthorised = client.post("/api/v1/feeds/hl7v2", data=text, content_type=ER7)
    assert unauthorised.status_code == 401
    assert _msa(unauthorised) == "AR"
    wrong = client.post(
        "/api/v1/feeds/hl7v2", data=text, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip
    assert (wrong.status_code, _msa(wrong)) == (415, "AR")


def test_an_organisation_without_an_agreement_gets_an_ar(client: Client) -> None:
    lapsed = make_organisation(ods_code="ZLAP1", dsa_start=None)
    _, token = make_credential(lapsed)
    response = _body(client, token, hl7_message(next_nhs_number()))
    assert (_msa(response), _errors(response)) == ("AR", [("MSH^1^4", "207")])
    assert not FeedMessage.objects.exists()


def test_the_receipt_lists_hl7_problems_by_location_and_partial_dates_pass(
    client: Client, hospital
) -> None:
    _, token = hospital
    _body(client, token, hl7_message(next_nhs_number(), control_id="r1", birth="19411341"))
    message = _process_last()
    receipt = client.get(
        f"/api/v1/feeds/receipts/{message.public_id}", HTTP_AUTHORIZATION=f"Bearer {token}"
    ).json()
    assert receipt["status"] == "done"
    problems = [
        (i["details"]["coding"][0]["code"], i["expression"])
        for i in receipt["outcome"]["issue"]
        if i["details"]["coding"][0]["code"].startswith("hl7v2-")
    ]
    assert problems == [("hl7v2-102", ["PID^1^7"])]

    number = next_nhs_number()
    _body(client, token, hl7_message(number, control_id="r2", birth="1941"))  # year only: valid
    assert "hl7v2-" not in json.dumps(_process_last().issues)
    assert Patient.objects.get(nhs_number=number).birth_date is None  # a year is not a day


def test_a_death_and_an_sn_equals_result_are_filed_as_fhir_allows(client: Client, hospital) -> None:
    _, token = hospital
    number = next_nhs_number()
    text = hl7_message(number, control_id="dead").replace(
        "ZZ1 1AA", "ZZ1 1AA" + "|" * 18 + "20261119|Y"
    ).replace("ADT^A01", "ORU^R01") + "\r".join([
        "OBR|1|P1|F9|K^Potassium^L|||20261119083000",
        "OBX|1|SN|K^Potassium^L||=^4.1|mmol/L|3.5-5.3||||F",
    ]) + "\r"  # fmt: skip
    assert _msa(_body(client, token, text)) == "AA"
    processed = _process_last()
    assert processed.counts["rejected"] == 0, processed.issues
    assert Patient.objects.get(nhs_number=number).deceased is True
    potassium = Entry.objects.get(
        patient__nhs_number=number, code="K", resource_type="Observation"
    ).resource
    assert potassium["valueQuantity"] == {"value": Decimal("4.1"), "unit": "mmol/L"}


# ------------------------------------------------------------------ A40 with several pairs


def _a40(*pairs: tuple[str, str, str]) -> str:
    """An A40 merging each (prior NHS number, survivor NHS number, local id suffix) pair."""
    segments = [
        "MSH|^~\\&|PAS|ZAC01|SR|B|20261120111500||ADT^A40^ADT_A39|m40|P|2.5",
        "EVN|A40|20261120111500",
    ]
    for i, (prior, survivor, suffix) in enumerate(pairs, start=1):
        segments += [
            f"PID|{i}||{survivor}^^^NHS^NH~M{suffix}1^^^ZAC01^MR||ELLISON^MARGARET||19410314|F",
            "PD1|||RIVERSIDE MEDICAL PRACTICE^^Z81001",
            f"MRG|{prior}^^^NHS^NH~M{suffix}9^^^ZAC01^MR",
        ]
    return "\r".join(segments) + "\r"


def test_an_a40_with_two_pairs_converts_to_one_merge_per_pair() -> None:
    old1, new1, old2, new2 = (next_nhs_number() for _ in range(4))
    converted = convert(_a40((old1, new1, "V"), (old2, new2, "W")).encode())
    assert converted.ack_code == "AA", converted.problems
    assert converted.merges == [
        Merge(old1, "pt-MV9", new1, "pt-MV1"),
        Merge(old2, "pt-MW9", new2, "pt-MW1"),
    ]
    patients = [e["resource"] for e in converted.bundle["entry"]]
    assert [(p["resourceType"], p["id"]) for p in patients] == [
        ("Patient", "pt-MV1"), ("Patient", "pt-MW1"),
    ]  # fmt: skip
    assert patients[1]["identifier"][0]["value"] == new2
    assert patients[1]["generalPractitioner"][0]["identifier"]["value"] == "Z81001"


def test_each_a40_pair_is_checked_on_its_own() -> None:
    old1, new1, new2 = next_nhs_number(), next_nhs_number(), next_nhs_number()
    text = _a40((old1, new1, "V"), ("9990015008", new2, "W"))  # an invalid prior NHS number
    text += f"PID|3||{next_nhs_number()}^^^NHS^NH~MX1^^^ZAC01^MR||OTHER^PERSON||1950|M\r"
    converted = convert(text.encode())
    assert converted.ack_code == "AE"
    assert [(p.location, p.code) for p in converted.problems] == [
        ("MRG^2^1", "102"), ("MRG^3^0", "100"),
    ]  # fmt: skip
    # The second pair still moves the sender's own record of the person; the third has no MRG.
    assert converted.merges == [
        Merge(old1, "pt-MV9", new1, "pt-MV1"),
        Merge("", "pt-MW9", new2, "pt-MW1"),
    ]


def test_an_a40_with_two_pairs_merges_each_pair(client: Client, hospital) -> None:
    _, token = hospital
    old1, new1, old2, new2 = (next_nhs_number() for _ in range(4))
    for i, (old, visit) in enumerate(((old1, "V9"), (old2, "W9"))):
        _post(client, token, hl7_message(old, control_id=f"pre{i}", visit=visit).encode())
        _process_last()
    answer = _post(client, token, _a40((old1, new1, "V"), (old2, new2, "W")).encode())
    assert _msa(answer) == "AA"
    merged = _process_last()
    assert merged.counts["merged"] == 2  # each old person's Encounter
    for old, new in ((old1, new1), (old2, new2)):
        assert Entry.objects.filter(patient__nhs_number=new, resource_type="Encounter").exists()
        assert not Patient.objects.filter(nhs_number=old).exists()
    events = AuditEvent.objects.filter(action=AuditAction.MATCH_DECISION, detail__decision="merged")
    assert sorted(e.detail["merged_nhs_number"] for e in events) == sorted([old1, old2])
