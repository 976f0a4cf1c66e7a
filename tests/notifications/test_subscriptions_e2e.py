"""Subscriptions end to end: HTTP feeds -> a real Celery worker -> real HTTP receivers.

Every event kind from a FHIR and an HL7 v2 feed reaches the registered
practice's partner system, signed; nothing reaches an organisation without a
relationship or an active agreement, nothing is sent for an opted-out person
or an item the subscriber's role may not see, and a sensitive item arrives
only as "a new restricted item". A receiver that fails gets its notification
on a later attempt; $events catches up.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import pytest
import requests

from audit.models import AuditEvent
from sharedrecord.clients import api_client_register
from sharedrecord.models import Organisation
from sharedrecord.notifications.backport import RESTRICTED_EXTENSION, topic_url
from sharedrecord.notifications.models import Delivery, Event
from tests.factories import (
    make_credential,
    make_optout,
    make_organisation,
    next_nhs_number,
    partner,
)
from tests.notifications.feeds import (
    builder,
    deceased_bundle,
    encounter,
    every_kind_bundle,
    hl7_adt,
    hl7_death,
    hl7_mdm,
    hl7_oru,
)
from tests.notifications.receiver import Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

PAYLOAD = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
)


def token_for(live_server: Any, organisation: Organisation, role: str) -> str:
    issued = api_client_register(
        name=f"EPR {organisation.ods_code} {role}",
        grant="client-credentials",
        organisation=organisation,
        role=role,
    )
    answer = requests.post(
        f"{live_server.url}/o/token/",
        data={"grant_type": "client_credentials", "scope": "system/*.read"},
        auth=(issued.client_id, issued.client_secret),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def subscribe(
    live_server: Any, token: str, kind: str, endpoint: str, content: str = "id-only"
) -> dict[str, Any]:
    resource = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": topic_url(kind),
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": PAYLOAD, "valueCode": content}]},
        },
    }
    answer = requests.post(
        f"{live_server.url}/fhir/R4/Subscription",
        data=json.dumps(resource),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def fhir_get(live_server: Any, token: str, path: str, **params: Any) -> dict[str, Any]:
    answer = requests.get(
        f"{live_server.url}/fhir/R4/{path}",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def wait_active(live_server: Any, token: str, subscription_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = fhir_get(live_server, token, f"Subscription/{subscription_id}/$status")
        params = status["entry"][0]["resource"]["parameter"]
        if {"name": "status", "valueCode": "active"} in params:
            return
        time.sleep(0.2)
    raise AssertionError("the subscription never became active")


def post_fhir(live_server: Any, token: str, bundle: dict[str, Any]) -> None:
    bundle = {**bundle, "id": str(uuid.uuid4())}  # each a new message
    answer = requests.post(
        f"{live_server.url}/api/v1/feeds/fhir",
        data=json.dumps(bundle),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text


def post_hl7(live_server: Any, token: str, payload: bytes) -> None:
    answer = requests.post(
        f"{live_server.url}/api/v1/feeds/hl7v2",
        data=payload,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/hl7-v2"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert "MSA|AA" in answer.text, answer.text


def signed(received: Any, secret: str) -> bool:
    expected = hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received.headers["X-Signature-SHA256"], expected)


def secret_of(resource: dict[str, Any]) -> str:
    return str(resource["extension"][0]["valueString"])


def test_every_kind_reaches_only_those_who_may_be_told(
    live_server: Any, celery_worker: Any
) -> None:
    gp, acute = partner("Z81001"), partner("ZAC01")
    community, social = partner("ZCM01"), partner("ZSC01")
    unrelated = make_organisation(ods_code="ZMH09", kind="mental-health")
    lapsed = make_organisation(ods_code="ZCM09", kind="community")
    gp_feed, acute_feed = make_credential(gp)[1], make_credential(acute)[1]
    # One person's events come by the hospital's FHIR feed, another's by its HL7 v2 feed.
    number, by_hl7, opted_out = next_nhs_number(), next_nhs_number(), next_nhs_number()
    # Both are registered with the practice (its own feed); community, social care and the
    # lapsed organisation each hold their own active care plan for the first (a relationship).
    post_fhir(live_server, gp_feed, builder(number, "Z81001", "g1").bundle())
    post_fhir(live_server, gp_feed, builder(by_hl7, "Z81001", "g2").bundle())
    for org in (community, social, lapsed):
        post_fhir(
            live_server,
            make_credential(org)[1],
            builder(number, org.ods_code, "c1")
            .add(
                "CarePlan",
                {
                    "status": "active",
                    "intent": "plan",
                    "title": "Support at home",
                    "period": {"start": "2020-01-01"},
                },
            )
            .bundle(),
        )

    receivers = {
        name: Receiver().start() for name in ("gp", "community", "social", "unrelated", "lapsed")
    }
    try:
        gp_token = token_for(live_server, gp, "gp")
        gp_subs = {
            kind: subscribe(
                live_server,
                gp_token,
                kind,
                receivers["gp"].url,
                "full-resource" if kind == "result" else "id-only",
            )
            for kind in (
                "admission",
                "discharge",
                "ae-attendance",
                "death",
                "result",
                "document",
                "care-plan",
                "alert",
            )
        }
        community_token = token_for(live_server, community, "nurse")
        community_sub = subscribe(live_server, community_token, "alert", receivers["community"].url)
        social_token = token_for(live_server, social, "social-worker")
        social_sub = subscribe(live_server, social_token, "result", receivers["social"].url)
        unrelated_token = token_for(live_server, unrelated, "clinical-practitioner")
        unrelated_sub = subscribe(
            live_server, unrelated_token, "admission", receivers["unrelated"].url
        )
        lapsed_token = token_for(live_server, lapsed, "nurse")
        lapsed_sub = subscribe(live_server, lapsed_token, "admission", receivers["lapsed"].url)
        for token, sub in [(gp_token, s) for s in gp_subs.values()] + [
            (community_token, community_sub),
            (social_token, social_sub),
            (unrelated_token, unrelated_sub),
            (lapsed_token, lapsed_sub),
        ]:
            wait_active(live_server, token, sub["id"])
        assert len(receivers["gp"].of_type("handshake")) == 8
        Organisation.objects.filter(pk=lapsed.pk).update(
            dsa_end=datetime.date.today() - datetime.timedelta(days=1)
        )

        # The hospital's FHIR feed (a restricted alert among it; then the discharge, the
        # death) and its HL7 v2 feed (A&E, admission, discharge, result, document, death).
        post_fhir(live_server, acute_feed, every_kind_bundle(number, "ZAC01", sensitive_flag=True))
        discharged = builder(number, "ZAC01", "n1").add("Encounter", encounter("IMP", "finished"))
        discharged.entries[1]["resource"]["meta"] = {"versionId": "2"}
        post_fhir(live_server, acute_feed, discharged.bundle())
        post_fhir(live_server, acute_feed, deceased_bundle(number, "ZAC01"))
        for payload in (
            hl7_adt(by_hl7, "A04", patient_class="E", control_id="N1", visit="V81"),
            hl7_adt(by_hl7, "A01", patient_class="I", control_id="N2", visit="V82"),
            hl7_adt(by_hl7, "A03", patient_class="I", control_id="N3", visit="V82"),
            hl7_oru(by_hl7, control_id="N4"),
            hl7_mdm(by_hl7, control_id="N5"),
            hl7_death(by_hl7, control_id="N6"),
        ):
            post_hl7(live_server, acute_feed, payload)
        # Nothing for an opted-out person, whatever the feeds send.
        make_optout(opted_out, gp)
        post_fhir(live_server, acute_feed, every_kind_bundle(opted_out, "ZAC01", key="o1"))

        def gp_events() -> list[Any]:
            return receivers["gp"].of_type("event-notification")

        # FHIR: admission, A&E, result, document, care plan, alert, discharge, death;
        # HL7 v2: A&E, admission, discharge, result, document, death.
        receivers["gp"].wait_for(lambda: len(gp_events()) == 14, timeout=90)
        by_topic: dict[str, list[Any]] = {}
        for received in gp_events():
            assert signed(received, secret_of(gp_subs[received.status["topic"].rsplit("/", 1)[-1]]))
            by_topic.setdefault(received.status["topic"].rsplit("/", 1)[-1], []).append(received)
        assert {k: len(v) for k, v in by_topic.items()} == {
            "admission": 2,
            "discharge": 2,
            "ae-attendance": 2,
            "death": 2,
            "result": 2,
            "document": 2,
            "care-plan": 1,
            "alert": 1,
        }
        # The practice's GP role sees restricted items of its registered patient: in full.
        assert by_topic["alert"][0].events[0]["focus"].split("/")[-2] == "Flag"
        # full-resource: the report itself follows the status.
        result = by_topic["result"][0].bundle
        assert result["type"] == "history"
        assert result["entry"][1]["resource"]["resourceType"] == "DiagnosticReport"
        assert [e["number"] for e in by_topic["admission"][0].events] == [1]
        assert [e["number"] for e in by_topic["admission"][1].events] == [2]

        # The community nurse is told of the restricted alert only as a restricted item.
        receivers["community"].wait_for(
            lambda: len(receivers["community"].of_type("event-notification")) == 1
        )
        restricted = receivers["community"].of_type("event-notification")[0].events[0]
        assert restricted["focus"] == ""
        assert {"url": RESTRICTED_EXTENSION, "valueBoolean": True} in restricted["extension"]
        # Everything was dispatched; nobody else was told anything.
        assert not Event.objects.filter(dispatched_at=None).exists()
        for name in ("social", "unrelated", "lapsed"):
            assert receivers[name].of_type("event-notification") == [], name
        assert not Event.objects.filter(patient__nhs_number=opted_out).exists()
        # The receiver answers before the worker records the answer: wait for the record.
        receivers["gp"].wait_for(lambda: Delivery.objects.filter(state="sent").count() == 15)
        assert not Delivery.objects.exclude(state="sent").exists()

        # $events: the practice catches up on its admissions.
        caught = fhir_get(
            live_server,
            gp_token,
            f"Subscription/{gp_subs['admission']['id']}/$events",
            eventsSinceNumber="1",
        )
        status = caught["entry"][0]["resource"]["parameter"]
        assert {"name": "type", "valueCode": "query-event"} in status
        assert [
            p["part"][0]["valueString"] for p in status if p["name"] == "notification-event"
        ] == ["1", "2"]
        # Each delivery is audited: what was sent to whom.
        sent = AuditEvent.objects.filter(
            action="notification-sent", outcome="success", detail__type="event-notification"
        )
        assert sent.count() == 15
        assert set(sent.values_list("detail__to", flat=True)) == {"Z81001", "ZCM01"}
    finally:
        for receiver in receivers.values():
            receiver.stop()


def test_a_failing_receiver_gets_its_notifications_in_order_later(
    live_server: Any, celery_worker: Any
) -> None:
    gp, acute = partner("Z81001"), partner("ZAC01")
    number = next_nhs_number()
    post_fhir(live_server, make_credential(gp)[1], builder(number, "Z81001", "g2").bundle())
    receiver = Receiver().start()
    try:
        token = token_for(live_server, gp, "gp")
        sub = subscribe(live_server, token, "admission", receiver.url)
        wait_active(live_server, token, sub["id"])
        receiver.failing = 2
        acute_feed = make_credential(acute)[1]
        post_hl7(
            live_server,
            acute_feed,
            hl7_adt(number, "A01", patient_class="I", control_id="R1", visit="V91"),
        )
        post_hl7(
            live_server,
            acute_feed,
            hl7_adt(number, "A01", patient_class="I", control_id="R2", visit="V92"),
        )
        receiver.wait_for(lambda: len(receiver.of_type("event-notification")) == 2, timeout=60)
        assert receiver.refused == 2
        numbers = [r.events[0]["number"] for r in receiver.of_type("event-notification")]
        assert numbers == [1, 2]  # the person's second waited behind the first
        receiver.wait_for(lambda: not Delivery.objects.exclude(state="sent").exists())
        failed = AuditEvent.objects.filter(action="notification-sent", outcome="failed")
        assert failed.count() == 2
    finally:
        receiver.stop()
