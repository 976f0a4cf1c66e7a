"""The feed API for partner systems: post a FHIR Bundle, poll its receipt."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ingestion.authentication import FeedTokenAuthentication, IsFeedSystem
from ingestion.fhir import FeedRejected, read_envelope
from ingestion.hl7v2 import Hl7Problem
from ingestion.hl7v2 import ack as hl7_ack
from ingestion.models import FeedCredential, FeedMessage, MessageKind, MessageStatus
from ingestion.outcomes import issue, operation_outcome, outcome_response
from ingestion.services import IdempotencyConflict, feed_message_receive, hl7_message_receive

JSON_TYPES = {"application/fhir+json", "application/json"}
XML_TYPES = {"application/fhir+xml", "application/xml", "text/xml"}
RECEIPT_STATUS = {
    MessageStatus.RECEIVED: "queued",
    MessageStatus.PROCESSING: "processing",
    MessageStatus.DONE: "done",
    MessageStatus.REJECTED: "rejected",
}


def receipt_body(message: FeedMessage) -> dict[str, Any]:
    """What a partner system sees of its message: status, counts and issues by path."""
    issues = []
    for item in message.issues:
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
        "status": RECEIPT_STATUS[MessageStatus(message.status)],
        "receivedAt": message.received_at.isoformat(),
        "finishedAt": message.finished_at.isoformat() if message.finished_at else None,
        "entries": message.entry_count,
        "counts": message.counts,
        "outcome": operation_outcome(issues),
    }


class FeedApi(APIView):
    """Base for feed endpoints: bearer tokens only, and every error as an OperationOutcome."""

    authentication_classes = (FeedTokenAuthentication,)
    permission_classes = (IsFeedSystem,)

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
        return super().handle_exception(exc)


RECEIPT_SCHEMA = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="A receipt: id, status (queued, processing, done, rejected), counts, and an "
    "OperationOutcome with one issue per problem (entry index and FHIR path, never data).",
)
OUTCOME_SCHEMA = OpenApiResponse(OpenApiTypes.OBJECT, description="A FHIR OperationOutcome.")


class FeedFhirApi(FeedApi):
    """POST a FHIR R4 Bundle: 202 with a receipt once it is stored (FHIR async pattern)."""

    @extend_schema(
        request={
            "application/fhir+json": OpenApiTypes.OBJECT,
            "application/fhir+xml": OpenApiTypes.STR,
        },
        responses={
            202: RECEIPT_SCHEMA,
            **dict.fromkeys((400, 401, 403, 409, 413, 415), OUTCOME_SCHEMA),
        },
        parameters=[
            OpenApiParameter(
                "Idempotency-Key", str, OpenApiParameter.HEADER, description="Defaults to Bundle.id"
            )
        ],
    )
    def post(self, request: Request) -> Response:
        credential = cast(FeedCredential, request.auth)
        if not credential.organisation.agreement_active():
            return outcome_response(
                403,
                code="agreement-inactive",
                diagnostics="Your organisation has no active data sharing agreement.",
            )
        content_type = request.content_type.split(";")[0].strip().lower()
        if content_type in JSON_TYPES:
            kind, media = MessageKind.FHIR_JSON, "json"
        elif content_type in XML_TYPES:
            kind, media = MessageKind.FHIR_XML, "xml"
        else:
            return outcome_response(
                415,
                code="unsupported-media-type",
                diagnostics="Send application/fhir+json or application/fhir+xml.",
            )
        too_large = outcome_response(
            413,
            code="too-large",
            diagnostics=f"The message is larger than {settings.FEED_MAX_BYTES} bytes. Split it.",
        )
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.FEED_MAX_BYTES:
            return too_large
        try:
            body = request.body
        except RequestDataTooBig:
            return too_large
        try:
            envelope = read_envelope(body, media, max_entries=settings.FEED_MAX_ENTRIES)  # type: ignore[arg-type]
        except FeedRejected as rejected:
            return outcome_response(
                rejected.status,
                code=rejected.code,
                diagnostics=rejected.message,
                expression=[rejected.path],
            )
        try:
            received = feed_message_receive(
                credential=credential,
                kind=kind,
                payload=body,
                idempotency_key=request.headers.get("Idempotency-Key") or envelope.bundle_id,
                entry_count=envelope.entry_count,
            )
        except IdempotencyConflict:
            return outcome_response(
                409,
                code="idempotency-conflict",
                diagnostics="A different message with this Bundle id or Idempotency-Key was "
                "already received. Use a new id for new content.",
            )
        location = reverse("feeds:receipt", kwargs={"receipt_id": received.message.public_id})
        response = Response(receipt_body(received.message), status=202)
        response["Content-Location"] = location
        return response


HL7_TYPES = {
    "x-application/hl7-v2+er7", "application/hl7-v2", "application/hl7-v2+er7", "text/plain",
    "application/edi-hl7", "application/octet-stream",
}  # fmt: skip


class FeedHl7v2Api(FeedApi):
    """POST one HL7 v2 message (ER7): the answer is its ACK, sent once it is stored.

    MSA-1 says what happened: AA stored, AE stored with parts dropped (ERR
    names each segment^sequence^field), AR not taken (ERR says why). The HTTP
    status is 200 for all three, as HL7 over HTTP expects; 401, 413 and 415
    are transport errors with an AR in the body.
    """

    @extend_schema(
        request={"x-application/hl7-v2+er7": OpenApiTypes.STR},
        responses={
            200: OpenApiResponse(OpenApiTypes.STR, description="An HL7 v2 ACK (MSA, ERR)."),
            **dict.fromkeys((401, 413, 415), OpenApiResponse(OpenApiTypes.STR, description="AR")),
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

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            response = _hl7_transport_error(401, "Send Authorization: Bearer <feed token>.")
            response["WWW-Authenticate"] = 'Bearer realm="feeds"'
            return response  # type: ignore[return-value]
        return super().handle_exception(exc)


HL7_ACK_TYPE = "x-application/hl7-v2+er7; charset=utf-8"


def _hl7_transport_error(status: int, text: str) -> HttpResponse:
    problem = Hl7Problem("", 0, 0, "207", text)
    body = hl7_ack(header=None, code="AR", problems=[problem], text=text)
    return HttpResponse(body, content_type=HL7_ACK_TYPE, status=status)


class FeedReceiptApi(FeedApi):
    """GET a receipt: queued, processing, done or rejected, with counts and issues."""

    @extend_schema(responses={200: RECEIPT_SCHEMA, 404: OUTCOME_SCHEMA})
    def get(self, request: Request, receipt_id: str) -> Response:
        credential = cast(FeedCredential, request.auth)
        message = FeedMessage.objects.filter(
            public_id=receipt_id, organisation=credential.organisation
        ).first()
        if message is None:
            return outcome_response(404, code="not-found", diagnostics="No such receipt.")
        return Response(receipt_body(message))
