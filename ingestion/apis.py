"""The feed API for partner systems: post a FHIR Bundle or an HL7 v2 message, poll its receipt."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal, cast

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.outcomes import FHIR_JSON, operation_outcome
from ingestion.authentication import FeedTokenAuthentication, IsFeedSystem
from ingestion.bulk import ndjson_upload_check
from ingestion.failures import failure_issue
from ingestion.fhir.results import FeedRejected
from ingestion.health import SystemHealth, feed_health
from ingestion.hl7_receiving import hl7_message_receive
from ingestion.hl7v2.ack import ack as hl7_ack
from ingestion.hl7v2.results import Hl7Problem
from ingestion.models import FeedCredential, FeedMessage, MessageKind, MessageStatus, ParkState
from ingestion.outcomes import issue, outcome_response
from ingestion.receiving import (
    IdempotencyConflict,
    feed_agreement_check,
    feed_envelope_read,
    feed_message_receive,
    feed_message_refuse,
)
from ingestion.workbench import parked_entries_of, parked_for_sender
from sharedrecord.access import feed_operator_for
from sharedrecord.exceptions import NOT_KEPT, RETRY_AFTER_SECONDS, store_unavailable

JSON_TYPES = {"application/fhir+json", "application/json"}
XML_TYPES = {"application/fhir+xml", "application/xml", "text/xml"}
# FHIR Bulk Data's format: one resource a line (ingestion/bulk.py).
NDJSON_TYPES = {"application/fhir+ndjson", "application/ndjson", "application/x-ndjson"}
RECEIPT_STATUS = {
    MessageStatus.RECEIVED: "queued",
    MessageStatus.PROCESSING: "processing",
    MessageStatus.DONE: "done",
    MessageStatus.REJECTED: "rejected",
    MessageStatus.FAILED: "failed",
}


def receipt_body(message: FeedMessage) -> dict[str, Any]:
    """What a partner system sees of its message: status, counts and issues by path.

    While a failed attempt waits for the next one the status is "retrying",
    with "attempt n of m" and the stage; after the last it is "failed". Either
    way the issue names the stage, entries and paths, never the data.
    """
    status = RECEIPT_STATUS[MessageStatus(message.status)]
    items = list(message.issues)
    retrying = message.status == MessageStatus.RECEIVED and bool(message.failure)
    failed_attempt = retrying or message.status == MessageStatus.FAILED
    if retrying:
        status = "retrying"
        items = [failure_issue(message.failure, final=False, maximum=settings.FEED_MAX_ATTEMPTS)]
    issues = []
    for item in items:
        where = [f"Bundle.entry[{item['entry']}]"] if item.get("entry") is not None else []
        issues.append(
            issue(
                code=item["code"],
                diagnostics=item["diagnostics"],
                severity=item["severity"],
                expression=where + list(item.get("expression", [])),
            )
        )
    return {
        "id": str(message.public_id),
        "status": status,
        "receivedAt": message.received_at.isoformat(),
        "finishedAt": message.finished_at.isoformat() if message.finished_at else None,
        "entries": message.entry_count,
        "counts": message.counts,
        "attempt": message.attempts,
        "maxAttempts": settings.FEED_MAX_ATTEMPTS,
        "stage": message.failure.get("stage") if failed_attempt else None,
        "outcome": operation_outcome(issues),
    }


class FhirJsonRenderer(JSONRenderer):
    """FHIR's own JSON media type: what FHIR clients send in Accept."""

    media_type = FHIR_JSON
    format = "json"


class FeedApi(APIView):
    """Base for FHIR feed endpoints: bearer tokens only, every error as an OperationOutcome.

    Answers are FHIR JSON (or plain JSON when that is what the client asks
    for); an Accept that neither satisfies gets a 406 OperationOutcome.
    """

    authentication_classes = (FeedTokenAuthentication,)
    permission_classes = (IsFeedSystem,)
    renderer_classes = (FhirJsonRenderer, JSONRenderer)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            response = outcome_response(
                401,
                code="unauthenticated",
                diagnostics="Send Authorization: Bearer <token> with a live feed credential.",
            )
            response["WWW-Authenticate"] = 'Bearer realm="feeds"'
            return response
        if isinstance(exc, exceptions.PermissionDenied):
            return outcome_response(403, code="forbidden", diagnostics="Not allowed.")
        if isinstance(exc, exceptions.MethodNotAllowed):
            return outcome_response(405, code="not-supported", diagnostics="Method not allowed.")
        if isinstance(exc, exceptions.NotAcceptable):
            return outcome_response(
                406,
                code="not-acceptable",
                diagnostics="Answers are application/fhir+json (or application/json).",
            )
        if isinstance(exc, exceptions.APIException):
            return outcome_response(exc.status_code, code="invalid", diagnostics=str(exc.detail))
        if store_unavailable(exc):
            response = outcome_response(503, code="unavailable", diagnostics=NOT_KEPT)
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        return super().handle_exception(exc)


RECEIPT_SCHEMA = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="A receipt: id, status (queued, processing, retrying, done, rejected, failed), "
    "counts, the attempt (of maxAttempts) and the stage a failed attempt reached, and an "
    "OperationOutcome with one issue per problem (entry index and FHIR path, never data).",
)
OUTCOME_SCHEMA = OpenApiResponse(OpenApiTypes.OBJECT, description="A FHIR OperationOutcome.")


class FeedFhirApi(FeedApi):
    """POST a FHIR R4 Bundle, or resources as NDJSON: 202 with a receipt once it is stored.

    FHIR's asynchronous pattern. An NDJSON upload (application/fhir+ndjson, one
    resource a line, as FHIR Bulk Data exports them) is refused here only when
    it cannot be read at all; the receipt names each bad line by its number.
    """

    @extend_schema(
        request={
            "application/fhir+json": OpenApiTypes.OBJECT,
            "application/fhir+xml": OpenApiTypes.STR,
            "application/fhir+ndjson": OpenApiTypes.STR,
        },
        responses={
            202: RECEIPT_SCHEMA,
            **dict.fromkeys((400, 401, 403, 406, 409, 413, 415), OUTCOME_SCHEMA),
        },
        parameters=[
            OpenApiParameter(
                "Idempotency-Key", str, OpenApiParameter.HEADER, description="Defaults to Bundle.id"
            )
        ],
    )
    def post(self, request: Request) -> Response:
        credential = cast(FeedCredential, request.auth)
        content_type = request.content_type.split(";")[0].strip().lower()
        kind = MessageKind.FHIR_XML if content_type in XML_TYPES else MessageKind.FHIR_JSON
        if content_type in NDJSON_TYPES:
            kind = MessageKind.FHIR_NDJSON
        try:
            message = self._receive(request, credential, content_type, kind)
        except FeedRejected as rejected:
            feed_message_refuse(
                credential=credential,
                kind=kind,
                code=rejected.code,
                location=rejected.path,
                reason=rejected.message,
            )
            return outcome_response(
                rejected.status,
                code=rejected.code,
                diagnostics=rejected.message,
                expression=[rejected.path] if rejected.path else None,
            )
        location = reverse("feeds:receipt", kwargs={"receipt_id": message.public_id})
        response = Response(receipt_body(message), status=202)
        response["Content-Location"] = location
        return response

    def _receive(
        self, request: Request, credential: FeedCredential, content_type: str, kind: MessageKind
    ) -> FeedMessage:
        """Check the message and store it; every refusal is a FeedRejected with its status."""
        feed_agreement_check(organisation=credential.organisation)
        if content_type not in JSON_TYPES | XML_TYPES | NDJSON_TYPES:
            raise FeedRejected(
                "unsupported-media-type",
                "Send application/fhir+json, application/fhir+xml or application/fhir+ndjson.",
                status=415,
                path="",
            )
        too_large = FeedRejected(
            "too-large",
            f"The message is larger than {settings.FEED_MAX_BYTES} bytes. Split it.",
            status=413,
            path="",
        )
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.FEED_MAX_BYTES:
            raise too_large
        try:
            body = request.body
        except RequestDataTooBig:
            raise too_large from None
        media: Literal["json", "xml"] = "xml" if kind == MessageKind.FHIR_XML else "json"
        if kind == MessageKind.FHIR_NDJSON:
            bundle_id, entry_count = "", ndjson_upload_check(body)
        else:
            envelope = feed_envelope_read(body, media)
            bundle_id, entry_count = envelope.bundle_id, envelope.entry_count
        try:
            received = feed_message_receive(
                credential=credential,
                kind=kind,
                payload=body,
                idempotency_key=request.headers.get("Idempotency-Key") or bundle_id,
                entry_count=entry_count,
            )
        except IdempotencyConflict:
            raise FeedRejected(
                "idempotency-conflict",
                "A different message with this Bundle id or Idempotency-Key was "
                "already received. Use a new id for new content.",
                status=409,
                path="",
            ) from None
        return received.message


HL7_TYPES = {
    "x-application/hl7-v2+er7", "application/hl7-v2", "application/hl7-v2+er7", "text/plain",
    "application/edi-hl7", "application/octet-stream",
}  # fmt: skip
HL7_ACK_TYPE = "x-application/hl7-v2+er7; charset=utf-8"


class Er7Renderer(BaseRenderer):
    """An HL7 v2 ACK, already encoded (the views answer with it as bytes)."""

    media_type = "x-application/hl7-v2+er7"
    format = "er7"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        return data if isinstance(data, bytes) else str(data or "").encode()


def _er7_alias(media: str) -> type[Er7Renderer]:
    """The same ACK under another name HL7 v2 senders use in Accept."""
    return type(f"Er7Renderer_{media}", (Er7Renderer,), {"media_type": media})


class FeedHl7v2Api(APIView):
    """POST one HL7 v2 message (ER7): the answer is its ACK, sent once it is stored.

    MSA-1 says what happened: AA stored, AE stored with parts dropped (ERR
    names each segment^sequence^field), AR not taken (ERR says why). The HTTP
    status is 200 for all three, as HL7 over HTTP expects; 401, 405, 406, 413
    and 415 are transport errors with an AR in the body.
    """

    authentication_classes = (FeedTokenAuthentication,)
    permission_classes = (IsFeedSystem,)
    renderer_classes = (
        Er7Renderer,
        *(_er7_alias(m) for m in ("application/hl7-v2+er7", "application/hl7-v2", "text/plain")),
    )

    @extend_schema(
        request={"x-application/hl7-v2+er7": OpenApiTypes.STR},
        responses={
            200: OpenApiResponse(OpenApiTypes.STR, description="An HL7 v2 ACK (MSA, ERR)."),
            **dict.fromkeys(
                (401, 403, 405, 406, 413, 415),
                OpenApiResponse(OpenApiTypes.STR, description="AR"),
            ),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        credential = cast(FeedCredential, request.auth)
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.FEED_MAX_BYTES:
            return _hl7_transport_error(413, "The message is too large.")
        try:
            body = request.body
        except RequestDataTooBig:
            return _hl7_transport_error(413, "The message is too large.")
        content_type = request.content_type.split(";")[0].strip().lower()
        if body.strip() and content_type not in HL7_TYPES:
            return _hl7_transport_error(415, "Send the message as x-application/hl7-v2+er7.")
        answer = hl7_message_receive(credential=credential, payload=body)
        return HttpResponse(answer.ack, content_type=HL7_ACK_TYPE, status=200)

    def handle_exception(self, exc: Exception) -> HttpResponse:  # type: ignore[override]
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            response = _hl7_transport_error(401, "Send Authorization: Bearer <feed token>.")
            response["WWW-Authenticate"] = 'Bearer realm="feeds"'
            return response
        if isinstance(exc, exceptions.NotAcceptable):
            return _hl7_transport_error(406, "The answer is an ACK: x-application/hl7-v2+er7.")
        if isinstance(exc, exceptions.APIException):
            return _hl7_transport_error(exc.status_code, str(exc.detail))
        if store_unavailable(exc):
            response = _hl7_transport_error(503, NOT_KEPT)
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        return super().handle_exception(exc)


def _hl7_transport_error(status: int, text: str) -> HttpResponse:
    problem = Hl7Problem("", 0, 0, "207", text)
    body = hl7_ack(header=None, code="AR", problems=[problem], text=text)
    return HttpResponse(body, content_type=HL7_ACK_TYPE, status=status)


class FeedReceiptApi(FeedApi):
    """GET a receipt: its status (queued ... done, rejected, failed), counts and issues."""

    @extend_schema(responses={200: RECEIPT_SCHEMA, 404: OUTCOME_SCHEMA, 406: OUTCOME_SCHEMA})
    def get(self, request: Request, receipt_id: str) -> Response:
        credential = cast(FeedCredential, request.auth)
        try:
            public_id = uuid.UUID(receipt_id)
        except ValueError:
            return outcome_response(404, code="not-found", diagnostics="No such receipt.")
        message = FeedMessage.objects.filter(
            public_id=public_id, organisation=credential.organisation
        ).first()
        if message is None:
            return outcome_response(404, code="not-found", diagnostics="No such receipt.")
        return Response(receipt_body(message))


class FeedParkedApi(FeedApi):
    """GET the sender's own parked entries and what the data quality team decided.

    Each case: the receipt it came in, its entries (index, type and the
    sender's own id), why it was parked, its state (parked, filed, rejected,
    correction-requested, blocked) and the decision's code. Never content.
    """

    @extend_schema(
        parameters=[OpenApiParameter("state", str, enum=ParkState.values)],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="The sender's cases.")},
    )
    def get(self, request: Request) -> Response:
        credential = cast(FeedCredential, request.auth)
        state = request.query_params.get("state", "")
        if state and state not in ParkState.values:
            return outcome_response(
                400, code="invalid-parameter", diagnostics="state is not a known state.",
                expression=["state"],
            )  # fmt: skip
        cases = parked_for_sender(organisation_ods=credential.organisation.ods_code, state=state)
        entries = parked_entries_of(groups=[case.group for case in cases])
        return Response(
            {
                "cases": [
                    {
                        "id": str(case.group),
                        "receipt": str(case.receipt),
                        "reason": case.reason,
                        "state": case.state,
                        "decision": case.decision_code,
                        "parkedAt": case.parked_at.isoformat(),
                        "decidedAt": case.decided_at.isoformat() if case.decided_at else None,
                        "entries": entries.get(case.group, []),
                    }
                    for case in cases
                ]
            }
        )


class FeedHealthApi(APIView):
    """GET: every connected system's feed health (the programme's feed operators only)."""

    class OutputSerializer(serializers.Serializer[Any]):
        credential_id = serializers.CharField()
        organisation = serializers.CharField()
        ods_code = serializers.CharField()
        system = serializers.CharField()
        state = serializers.CharField()
        late = serializers.BooleanField()
        last_received_at = serializers.DateTimeField(allow_null=True)
        expected_interval_seconds = serializers.SerializerMethodField()
        received_last_24_hours = serializers.IntegerField(source="received_today")
        hourly = serializers.ListField(child=serializers.IntegerField())
        rejects = serializers.DictField(child=serializers.IntegerField())
        parks = serializers.DictField(child=serializers.IntegerField())
        failures = serializers.SerializerMethodField()

        def get_expected_interval_seconds(self, health: SystemHealth) -> int | None:
            interval = health.expected_interval
            return None if interval is None else int(interval.total_seconds())

        def get_failures(self, health: SystemHealth) -> list[dict[str, Any]]:
            return [
                {"id": f.public_id, "received_at": f.received_at.isoformat(),
                 "attempts": f.attempts, "stage": f.stage, "error": f.error}
                for f in health.failures
            ]  # fmt: skip

    def handle_exception(self, exc: Exception) -> Response:
        """Under /api/v1/feeds/ every error is an OperationOutcome, as the feeds' own are."""
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            return outcome_response(401, code="unauthenticated", diagnostics="Sign in first.")
        if isinstance(exc, exceptions.APIException):
            code = "forbidden" if exc.status_code == 403 else "invalid"
            return outcome_response(exc.status_code, code=code, diagnostics=str(exc.detail))
        return super().handle_exception(exc)

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        if feed_operator_for(request.user) is None:
            raise exceptions.PermissionDenied(
                "Only the programme's feed operators see feed health."
            )
        return Response(self.OutputSerializer(feed_health(), many=True).data)
