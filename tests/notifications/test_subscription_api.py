"""The Subscription API: topics, making a subscription, bad input as OperationOutcomes, $events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditEvent
from ingestion.models import MessageKind
from sharedrecord.models import Entry, Patient
from sharedrecord.notifications.backport import PAYLOAD_CONTENT, TOPIC_BASE, topic_url
from sharedrecord.notifications.dispatch import notification_events_dispatch
from sharedrecord.notifications.models import EventKind, Subscription
from tests.factories import feed, feed_kind, make_credential, next_nhs_number, partner
from tests.fhirapi import body, fhir_get, partner_token, staff_token
from tests.notifications.feeds import builder, every_kind_bundle, report_with_decimals

pytestmark = pytest.mark.django_db


def subscription(kind: str = "admission", **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Our patients' admissions",
        "criteria": topic_url(kind),
        "channel": {
            "type": "rest-hook",
            "endpoint": "https://receiver.example/hook",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": "id-only"}]},
            **channel,
        },
    }


def post(client: Client, token: str, body: Any, content_type: str = "application/fhir+json") -> Any:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post("/fhir/R4/Subscription", data=data, content_type=content_type,
                       HTTP_AUTHORIZATION=f"Bearer {token}")  # fmt: skip


@pytest.fixture
def gp_token(client: Client) -> str:
    return partner_token(client, partner("Z81001"), role="gp")


def test_every_topic_is_served_with_its_canonical_url(client: Client, gp_token: str) -> None:
    found = fhir_get(client, gp_token, "SubscriptionTopic").json_body
    urls = sorted(e["resource"]["url"] for e in found["entry"])
    assert urls == sorted(TOPIC_BASE + kind for kind in EventKind.values)
    one = fhir_get(client, gp_token, "SubscriptionTopic/discharge").json_body
    assert one["resourceType"] == "SubscriptionTopic"
    assert one["resourceTrigger"][0]["resource"] == "Encounter"
    assert fhir_get(client, gp_token, "SubscriptionTopic/nonsense").status_code == 404


def test_a_partner_system_subscribes_and_sees_its_secret_once(
    client: Client, gp_token: str
) -> None:
    made = post(client, gp_token, subscription())
    assert made.status_code == 201, made.content
    resource = made.json()
    assert resource["status"] == "requested"
    assert resource["criteria"] == topic_url("admission")
    assert made["Location"].endswith(f"/Subscription/{resource['id']}")
    secret = resource["extension"][0]["valueString"]
    assert len(secret) == 64
    read = fhir_get(client, gp_token, f"Subscription/{resource['id']}").json_body
    assert "extension" not in read
    assert read["channel"]["_payload"]["extension"][0]["valueCode"] == "id-only"
    listed = fhir_get(client, gp_token, "Subscription").json_body
    assert [e["resource"]["id"] for e in listed["entry"]] == [resource["id"]]
    assert AuditEvent.objects.filter(action="subscription-change",
                                     detail__subscription=resource["id"]).exists()  # fmt: skip


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        (b"{not json", None),
        ({"resourceType": "Patient"}, "http.resourceType"),
        ({**subscription(), "criteria": "https://elsewhere.example/Topic/x"}, "http.criteria"),
        (subscription(type="websocket"), "http.channel.type"),
        (subscription(endpoint="ftp://receiver.example/"), "http.channel.endpoint"),
        (subscription(endpoint="https://user:pw@receiver.example/"), "http.channel.endpoint"),
        (subscription(payload="application/fhir+xml"), "http.channel.payload"),
        (
            subscription(_payload={"extension": [{"url": PAYLOAD_CONTENT, "valueCode": "all"}]}),
            "http.channel.payload",
        ),
        (
            subscription(
                extension=[
                    {
                        "url": "http://hl7.org/fhir/uv/subscriptions-backport/"
                        "StructureDefinition/backport-heartbeat-period",
                        "valueUnsignedInt": -5,
                    }
                ]
            ),
            "http.channel.extension",
        ),
    ],
)
def test_a_bad_subscription_is_refused_with_an_operation_outcome(
    client: Client, gp_token: str, body: Any, expression: str | None
) -> None:
    answer = post(client, gp_token, body)
    assert answer.status_code == 400, answer.content
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    if expression:
        assert outcome["issue"][0]["expression"] == [expression]
    assert not Subscription.objects.exists()


def test_plain_http_endpoints_are_refused_outside_tests(
    client: Client, gp_token: str, settings: Any
) -> None:
    settings.NOTIFY_ALLOW_HTTP = False
    answer = post(client, gp_token, subscription(endpoint="http://receiver.example/hook"))
    assert answer.status_code == 400


def test_staff_applications_may_not_subscribe(client: Client, registered_gp: Any) -> None:
    token = staff_token(client, registered_gp)
    assert post(client, token, subscription()).status_code == 403


def test_another_organisations_subscription_is_not_found(client: Client, gp_token: str) -> None:
    made = post(client, gp_token, subscription()).json()
    other = partner_token(client, partner("ZAC01"), name="Hospital EPR")
    for path in ("", "/$status", "/$events"):
        assert fhir_get(client, other, f"Subscription/{made['id']}{path}").status_code == 404
    assert fhir_get(client, gp_token, "Subscription/not-an-id").status_code == 404


def test_events_catches_up_with_what_was_sent(client: Client, gp_token: str) -> None:
    made = post(client, gp_token, subscription("result", _payload={
        "extension": [{"url": PAYLOAD_CONTENT, "valueCode": "full-resource"}]})).json()  # fmt: skip
    Subscription.objects.filter(public_id=made["id"]).update(status="active")
    number = next_nhs_number()
    feed(make_credential(partner("Z81001"))[0], builder(number, "Z81001", "g1").bundle())
    feed(make_credential(partner("ZAC01"))[0], every_kind_bundle(number, "ZAC01"))
    notification_events_dispatch()
    caught = fhir_get(client, gp_token, f"Subscription/{made['id']}/$events",
                      {"eventsSinceNumber": "1", "content": "full-resource"}).json_body  # fmt: skip
    assert caught["type"] == "history"
    status = caught["entry"][0]["resource"]
    assert {"name": "type", "valueCode": "query-event"} in status["parameter"]
    assert {"name": "events-since-subscription-start", "valueString": "1"} in status["parameter"]
    assert caught["entry"][1]["resource"]["resourceType"] == "DiagnosticReport"
    assert AuditEvent.objects.filter(action="notification-sent",
                                     detail__type="query-event").count() == 1  # fmt: skip
    state = fhir_get(client, gp_token, f"Subscription/{made['id']}/$status").json_body
    assert {"name": "type", "valueCode": "query-status"} in state["entry"][0]["resource"][
        "parameter"
    ]
    bad = fhir_get(client, gp_token, f"Subscription/{made['id']}/$events",
                   {"eventsSinceNumber": "one"})  # fmt: skip
    assert bad.status_code == 400


def test_events_carry_a_resources_decimals_as_sent(client: Client, gp_token: str) -> None:
    # $events wrote the resource it read back as floats: 5.10 went out as 5.1.
    made = post(client, gp_token, subscription("result", _payload={
        "extension": [{"url": PAYLOAD_CONTENT, "valueCode": "full-resource"}]})).json()  # fmt: skip
    Subscription.objects.filter(public_id=made["id"]).update(status="active")
    number = next_nhs_number()
    feed(make_credential(partner("Z81001"))[0], builder(number, "Z81001", "g1").bundle())
    hospital = make_credential(partner("ZAC01"))[0]
    assert feed_kind(hospital, MessageKind.FHIR_JSON, report_with_decimals(number)).status == "done"
    notification_events_dispatch()
    caught = fhir_get(client, gp_token, f"Subscription/{made['id']}/$events",
                      {"eventsSinceNumber": "1", "content": "full-resource"})  # fmt: skip
    text = body(caught).decode().replace(" ", "")
    assert '"resourceType":"DiagnosticReport"' in text
    assert '"valueQuantity":{"unit":"mmol/L","value":5.10}' in text  # jsonb's key order
    assert '"low":{"value":3.50}' in text


def test_events_of_two_people_each_carry_their_own_resource_and_a_removed_one_none(
    client: Client, gp_token: str
) -> None:
    # $events reads a page of events together (each person's texts in one query): each
    # event still carries its own person's resource, and an item its source has removed
    # since says only that something happened.
    made = post(client, gp_token, subscription("result", _payload={
        "extension": [{"url": PAYLOAD_CONTENT, "valueCode": "full-resource"}]})).json()  # fmt: skip
    Subscription.objects.filter(public_id=made["id"]).update(status="active")
    people = []
    for key in ("a1", "b1", "c1"):
        number = next_nhs_number()
        feed(make_credential(partner("Z81001"))[0], builder(number, "Z81001", key).bundle())
        feed(make_credential(partner("ZAC01"))[0], every_kind_bundle(number, "ZAC01", key=key))
        people.append(Patient.objects.get(nhs_number=number))
    notification_events_dispatch()
    removed = Entry.objects.get(patient=people[2], resource_type="DiagnosticReport")
    removed.delete()
    caught = fhir_get(client, gp_token, f"Subscription/{made['id']}/$events",
                      {"eventsSinceNumber": "1", "content": "full-resource"}).json_body  # fmt: skip
    status = caught["entry"][0]["resource"]
    events = [p for p in status["parameter"] if p["name"] == "notification-event"]
    assert len(events) == 3
    reports = [e["resource"] for e in caught["entry"][1:]]
    assert len(reports) == 2
    for person, report in zip(people[:2], reports, strict=True):
        assert report["subject"]["reference"] == f"Patient/{person.public_id}"
        assert report["id"] == str(
            Entry.objects.get(patient=person, resource_type="DiagnosticReport").public_id
        )
    first, last = ({part["name"] for part in e["part"]} for e in (events[0], events[2]))
    assert "focus" in first
    assert "focus" not in last
