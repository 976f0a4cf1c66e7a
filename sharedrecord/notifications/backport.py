"""The R4 shapes of the Subscriptions Backport IG: topics, subscriptions, notification bundles.

R4 has no SubscriptionTopic or SubscriptionStatus: the IG carries the topic
as Subscription.criteria (its canonical URL) and the status as a Parameters
resource (profile backport-subscription-status-r4) first in a `history`
Bundle. SubscriptionTopic resources are served in the R4B shape, for
discovery. Pure: plain dicts in and out.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Any

from sharedrecord.notifications.models import EventKind

IG = "http://hl7.org/fhir/uv/subscriptions-backport"
STATUS_PROFILE = f"{IG}/StructureDefinition/backport-subscription-status-r4"
SUBSCRIPTION_PROFILE = f"{IG}/StructureDefinition/backport-subscription"
PAYLOAD_CONTENT = f"{IG}/StructureDefinition/backport-payload-content"
HEARTBEAT_PERIOD = f"{IG}/StructureDefinition/backport-heartbeat-period"
FILTER_CRITERIA = f"{IG}/StructureDefinition/backport-filter-criteria"
# Our own canonical URLs, one per event kind (stable: clients store them).
TOPIC_BASE = "https://sharedrecord.nhs.invalid/fhir/SubscriptionTopic/"
# The restricted-item marker on a notification event (its focus is left out).
RESTRICTED_EXTENSION = "https://sharedrecord.nhs.invalid/StructureDefinition/restricted-item"
ABNORMAL_EXTENSION = "https://sharedrecord.nhs.invalid/StructureDefinition/abnormal-result"

TOPIC_RESOURCES: dict[str, tuple[str, ...]] = {
    EventKind.ADMISSION: ("Encounter",),
    EventKind.DISCHARGE: ("Encounter",),
    EventKind.AE_ATTENDANCE: ("Encounter",),
    EventKind.DEATH: ("Patient",),
    EventKind.RESULT: ("DiagnosticReport",),
    EventKind.DOCUMENT: ("DocumentReference",),
    EventKind.CARE_PLAN: ("CarePlan",),
    EventKind.ALERT: ("Flag",),
}
TOPIC_TRIGGERS: dict[str, str] = {
    EventKind.ADMISSION: "An inpatient encounter arrived or in progress (HL7 v2 A01).",
    EventKind.DISCHARGE: "An inpatient encounter finished (HL7 v2 A03).",
    EventKind.AE_ATTENDANCE: "An emergency (A&E) encounter (HL7 v2 A04, class EMER).",
    EventKind.DEATH: "A Patient resource says the person has died (deceased[x]).",
    EventKind.RESULT: "A DiagnosticReport final, amended or corrected; abnormal flagged.",
    EventKind.DOCUMENT: "A new current DocumentReference (a letter, a discharge summary).",
    EventKind.CARE_PLAN: "A new or changed CarePlan.",
    EventKind.ALERT: "A new or changed alert (Flag).",
}


def topic_url(kind: str) -> str:
    return TOPIC_BASE + kind


def kind_of_topic(url: str) -> str | None:
    """The event kind a topic's canonical URL names, or None if it is not one of ours."""
    kind = url.removeprefix(TOPIC_BASE) if url.startswith(TOPIC_BASE) else ""
    return kind if kind in EventKind.values else None


def subscription_topic(kind: str) -> dict[str, Any]:
    """One topic as an R4B SubscriptionTopic resource."""
    return {
        "resourceType": "SubscriptionTopic",
        "id": kind,
        "url": topic_url(kind),
        "title": EventKind(kind).label,
        "status": "active",
        "description": TOPIC_TRIGGERS[kind],
        "resourceTrigger": [
            {
                "description": TOPIC_TRIGGERS[kind],
                "resource": resource,
                "supportedInteraction": ["create", "update"],
            }
            for resource in TOPIC_RESOURCES[kind]
        ],
        "notificationShape": [
            {"resource": resource, "include": [f"{resource}:subject"]}
            for resource in TOPIC_RESOURCES[kind]
        ],
    }


@dataclass(frozen=True)
class NotificationEvent:
    """One event as a notification carries it."""

    number: int
    timestamp: datetime.datetime
    focus: str  # "" for a restricted item (and for empty content)
    patient: str  # "Patient/<public id>" or ""
    restricted: bool
    abnormal: bool
    resource: dict[str, Any] | None = None  # full-resource content


def subscription_status(
    *,
    subscription_url: str,
    topic: str,
    status: str,
    kind: str,
    since_start: int,
    events: list[NotificationEvent],
    error: str = "",
) -> dict[str, Any]:
    """The Parameters (backport-subscription-status-r4) that opens every notification Bundle."""
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": subscription_url}},
        {"name": "topic", "valueCanonical": topic},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(since_start)},
    ]
    for event in events:
        part: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": _instant(event.timestamp)},
        ]
        if event.focus:
            part.append({"name": "focus", "valueReference": {"reference": event.focus}})
        if event.patient:
            part.append(
                {"name": "additional-context", "valueReference": {"reference": event.patient}}
            )
        entry: dict[str, Any] = {"name": "notification-event", "part": part}
        extensions = []
        if event.restricted:
            extensions.append({"url": RESTRICTED_EXTENSION, "valueBoolean": True})
        if event.abnormal:
            extensions.append({"url": ABNORMAL_EXTENSION, "valueBoolean": True})
        if extensions:
            entry["extension"] = extensions
        parameters.append(entry)
    if error:
        parameters.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def notification_bundle(
    *,
    subscription_url: str,
    topic: str,
    status: str,
    kind: str,
    since_start: int,
    events: list[NotificationEvent],
    now: datetime.datetime,
) -> dict[str, Any]:
    """A notification Bundle (type history): the status first, then any full resources."""
    status_resource = subscription_status(
        subscription_url=subscription_url, topic=topic, status=status, kind=kind,
        since_start=since_start, events=events,
    )  # fmt: skip
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status_resource['id']}",
            "resource": status_resource,
            "request": {"method": "GET", "url": f"{subscription_url}/$status"},
            "response": {"status": "200"},
        }
    ]
    for event in events:
        if event.resource is not None and event.focus:
            entries.append(
                {
                    "fullUrl": event.focus,
                    "resource": event.resource,
                    "request": {"method": "PUT", "url": event.focus.split("/fhir/R4/", 1)[-1]},
                    "response": {"status": "200"},
                }
            )
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "timestamp": _instant(now),
        "entry": entries,
    }


def _instant(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def subscription_resource(
    *,
    public_id: str,
    status: str,
    kind: str,
    endpoint: str,
    content: str,
    heartbeat_seconds: int,
    error: str = "",
) -> dict[str, Any]:
    """A Subscription as the backport IG shapes it in R4."""
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": content}]},
    }
    if heartbeat_seconds:
        channel["extension"] = [{"url": HEARTBEAT_PERIOD, "valueUnsignedInt": heartbeat_seconds}]
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": public_id,
        "meta": {"profile": [SUBSCRIPTION_PROFILE]},
        "status": status,
        "reason": EventKind(kind).label,
        "criteria": topic_url(kind),
        "channel": channel,
    }
    if error:
        resource["error"] = error
    return resource
