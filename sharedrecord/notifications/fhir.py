"""Subscriptions over the FHIR R4 API: SubscriptionTopic, Subscription, $status and $events.

HTTP only: the caller and its scopes are checked as for every FHIR route
(a partner system's token must allow reading the topic's resource types),
the body is parsed here into a SubscriptionRequest, and the services in
subscriptions.py do the rest. Errors are OperationOutcomes.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.http import Http404
from django.http.response import HttpResponseBase
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.parsers import BaseParser
from rest_framework.request import Request

from sharedrecord.fhirapi.bundles import bundle, json_response
from sharedrecord.fhirapi.views import FhirApi, FhirError
from sharedrecord.models import is_uuid
from sharedrecord.notifications.backport import (
    FILTER_CRITERIA,
    HEARTBEAT_PERIOD,
    PAYLOAD_CONTENT,
    TOPIC_RESOURCES,
    kind_of_topic,
    notification_bundle,
    subscription_resource,
    subscription_status,
    subscription_topic,
    topic_url,
)
from sharedrecord.notifications.delivery import subscription_url
from sharedrecord.notifications.models import EventKind, PayloadContent, Subscription
from sharedrecord.notifications.subscriptions import (
    MAX_HEARTBEAT_SECONDS,
    SubscriptionRequest,
    subscription_create,
    subscription_events,
    subscription_get,
)

SIGNING_EXTENSION = (
    "https://sharedrecord.nhs.invalid/StructureDefinition/subscription-signing-secret"
)
MAX_BODY = 64 * 1024
ALL_TOPIC_TYPES = frozenset(t for types in TOPIC_RESOURCES.values() for t in types)


def _resource(subscription: Subscription) -> dict[str, Any]:
    return subscription_resource(
        public_id=str(subscription.public_id), status=subscription.status,
        kind=subscription.kind, endpoint=subscription.endpoint, content=subscription.content,
        heartbeat_seconds=subscription.heartbeat_seconds, error=subscription.error,
    )  # fmt: skip


def subscription_request_parse(body: bytes) -> SubscriptionRequest:
    """A Subscription body into typed values; FhirError naming the element at fault."""
    if len(body) > MAX_BODY:
        raise FhirError(413, "too-costly", "The Subscription is too large.")
    try:
        resource = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FhirError(400, "invalid", "The body is not JSON.") from exc
    if not isinstance(resource, dict) or resource.get("resourceType") != "Subscription":
        raise FhirError(400, "invalid", "Send a Subscription resource.", "resourceType")
    kind = kind_of_topic(str(resource.get("criteria", "")))
    if kind is None:
        raise FhirError(
            400, "value", "Subscription.criteria must be one of this server's topic URLs "
            "(GET SubscriptionTopic).", "criteria",
        )  # fmt: skip
    criteria_ext = resource.get("_criteria")
    if isinstance(criteria_ext, dict) and any(
        isinstance(e, dict) and e.get("url") == FILTER_CRITERIA
        for e in criteria_ext.get("extension", [])
    ):
        raise FhirError(400, "not-supported", "Filter criteria are not supported.", "criteria")
    channel = resource.get("channel")
    if not isinstance(channel, dict) or channel.get("type") != "rest-hook":
        raise FhirError(400, "not-supported", "Only the rest-hook channel is supported.",
                        "channel.type")  # fmt: skip
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str) or len(endpoint) > 500:
        raise FhirError(400, "required", "channel.endpoint is required.", "channel.endpoint")
    payload = channel.get("payload", "application/fhir+json")
    if payload not in ("application/fhir+json", "application/json"):
        raise FhirError(400, "not-supported", "Only application/fhir+json payloads are sent.",
                        "channel.payload")  # fmt: skip
    content = PayloadContent.ID_ONLY.value
    payload_ext = channel.get("_payload")
    if isinstance(payload_ext, dict):
        for ext in payload_ext.get("extension", []):
            if isinstance(ext, dict) and ext.get("url") == PAYLOAD_CONTENT:
                content = str(ext.get("valueCode", ""))
    if content not in PayloadContent.values:
        raise FhirError(400, "value", "The payload content must be empty, id-only or "
                        "full-resource.", "channel.payload")  # fmt: skip
    heartbeat = 0
    for ext in channel.get("extension", []) or []:
        if isinstance(ext, dict) and ext.get("url") == HEARTBEAT_PERIOD:
            value = ext.get("valueUnsignedInt")
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not (0 <= value <= MAX_HEARTBEAT_SECONDS)
            ):
                raise FhirError(400, "value", "The heartbeat period must be 0 to 86400 "
                                "seconds.", "channel.extension")  # fmt: skip
            heartbeat = value
    return SubscriptionRequest(kind, endpoint, content, heartbeat)


class SubscriptionTopicSearchApi(FhirApi):
    """The topics, one per event kind (public, like the CapabilityStatement's list)."""

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponseBase:
        self.search_params(request)
        topics = [subscription_topic(kind) for kind in EventKind.values]
        base = self.base(request)
        return bundle(
            total=len(topics), links=[("self", f"{base}/SubscriptionTopic")],
            entries=[json.dumps({"fullUrl": f"{base}/SubscriptionTopic/{t['id']}", "resource": t,
                                 "search": {"mode": "match"}}) for t in topics],
        )  # fmt: skip


class SubscriptionTopicReadApi(FhirApi):
    @extend_schema(exclude=True)
    def get(self, request: Request, topic: str) -> HttpResponseBase:
        if topic not in EventKind.values:
            raise Http404
        return json_response(subscription_topic(topic))


class FhirBodyParser(BaseParser):
    """A FHIR JSON body handed on as bytes (read to one byte past the limit): parsed here."""

    media_type = "application/fhir+json"

    def parse(self, stream: Any, media_type: str | None = None,
              parser_context: Any = None) -> Any:  # fmt: skip
        return bytes(stream.read(MAX_BODY + 1)) if stream is not None else b""


class JsonBodyParser(FhirBodyParser):
    media_type = "application/json"


class SubscriptionCreateApi(FhirApi):
    """POST Subscription: a partner system subscribes its organisation to one topic.

    GET lists its organisation's subscriptions.
    """

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponseBase:
        caller = self.caller(request, ALL_TOPIC_TYPES)
        self.search_params(request)
        base = self.base(request)
        found = Subscription.objects.filter(organisation=caller.user.organisation).order_by("pk")
        entries = [
            json.dumps({"fullUrl": f"{base}/Subscription/{s.public_id}", "resource": _resource(s),
                        "search": {"mode": "match"}})
            for s in found
        ]  # fmt: skip
        return bundle(total=len(entries), links=[("self", f"{base}/Subscription")],
                      entries=entries)  # fmt: skip

    parser_classes = (FhirBodyParser, JsonBodyParser)  # type: ignore[assignment]

    @extend_schema(exclude=True)
    def post(self, request: Request) -> HttpResponseBase:
        data = request.data
        parsed = subscription_request_parse(data if isinstance(data, bytes) else b"")
        caller = self.caller(request, frozenset(TOPIC_RESOURCES[parsed.kind]))
        if not caller.system:
            raise FhirError(403, "forbidden", "Subscriptions are for partner systems "
                            "(client credentials).")  # fmt: skip
        try:
            subscription = subscription_create(
                owner=caller.user, client_id=caller.client_id, request=parsed,
                actor=caller.actor(),
            )  # fmt: skip
        except ValidationError as exc:
            raise FhirError(400, "value", " ".join(exc.messages), "channel.endpoint") from exc
        resource = _resource(subscription)
        # The signing secret is shown once, here; every notification's
        # X-Signature-SHA256 header is the HMAC-SHA256 of its body under it.
        resource["extension"] = [{"url": SIGNING_EXTENSION, "valueString": subscription.secret}]
        response = json_response(resource, status=201)
        response["Location"] = f"{self.base(request)}/Subscription/{subscription.public_id}"
        return response


class _OneSubscription(FhirApi):
    def subscription(self, request: Request, subscription_id: str) -> Subscription:
        caller = self.caller(request, ALL_TOPIC_TYPES)
        found = (
            subscription_get(owner=caller.user, public_id=subscription_id)
            if is_uuid(subscription_id)
            else None
        )
        if found is None:
            raise Http404
        return found


class SubscriptionReadApi(_OneSubscription):
    @extend_schema(exclude=True)
    def get(self, request: Request, subscription_id: str) -> HttpResponseBase:
        return json_response(_resource(self.subscription(request, subscription_id)))


class SubscriptionStatusApi(_OneSubscription):
    """Subscription/<id>/$status: a searchset holding its status Parameters."""

    @extend_schema(exclude=True)
    def get(self, request: Request, subscription_id: str) -> HttpResponseBase:
        subscription = self.subscription(request, subscription_id)
        status = subscription_status(
            subscription_url=subscription_url(subscription), topic=topic_url(subscription.kind),
            status=subscription.status, kind="query-status",
            since_start=subscription.events_since_start, events=[], error=subscription.error,
        )  # fmt: skip
        return bundle(
            total=1, links=[], entries=[json.dumps({"fullUrl": f"urn:uuid:{status['id']}",
                                                    "resource": status,
                                                    "search": {"mode": "match"}})],
        )  # fmt: skip


class SubscriptionEventsApi(_OneSubscription):
    """Subscription/<id>/$events: past notifications by event number, to catch up."""

    params = frozenset({"eventsSinceNumber", "eventsUntilNumber", "content"})

    @extend_schema(exclude=True)
    def get(self, request: Request, subscription_id: str) -> HttpResponseBase:
        subscription = self.subscription(request, subscription_id)
        params = dict(self.search_params(request))
        since = _number(params.get("eventsSinceNumber"), "eventsSinceNumber")
        until = _number(params.get("eventsUntilNumber"), "eventsUntilNumber")
        caller = self.caller(request, frozenset(TOPIC_RESOURCES[subscription.kind]))
        events = subscription_events(
            subscription=subscription, since=since, until=until,
            content=params.get("content", subscription.content), actor=caller.actor(),
        )  # fmt: skip
        return json_response(
            notification_bundle(
                subscription_url=subscription_url(subscription),
                topic=topic_url(subscription.kind),
                status=subscription.status,
                kind="query-event",
                since_start=subscription.events_since_start,
                events=events,
                now=timezone.now(),
            )
        )


def _number(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18:
        raise FhirError(400, "value", f"{name} must be a whole number.", name)
    return int(value)
