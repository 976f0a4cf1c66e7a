"""The opted-in feed for partner systems: who opted back in, so their records can be re-sent.

It lives with the feeds, not in optout/, because partner systems call it with
their feed credentials (ingestion's), and optout/ imports nothing above it.
Served at /api/v1/optouts/opted-in, where integrators already call it.
"""

from __future__ import annotations

from typing import cast

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.context import context_for
from ingestion.authentication import FeedTokenAuthentication, IsFeedSystem
from ingestion.credentials import feed_actor
from ingestion.models import FeedCredential
from optout.viewing import optins_for_partner


class OptInsSinceApi(APIView):
    """For partner systems: people who opted back in since a time and whose data you had sent.

    Re-send their records; everything you sent was removed when they opted out.
    """

    authentication_classes = (FeedTokenAuthentication,)
    permission_classes = (IsFeedSystem,)

    @extend_schema(
        parameters=[OpenApiParameter("since", str, required=True, description="ISO 8601 time")],
        responses={200: serializers.ListSerializer(child=serializers.CharField())},
    )
    def get(self, request: Request) -> Response:
        since = serializers.DateTimeField().to_internal_value(request.query_params.get("since", ""))
        credential = cast(FeedCredential, request.auth)
        numbers = optins_for_partner(
            partner_ods=credential.organisation.ods_code,
            since=since,
            actor=feed_actor(credential),
            context=context_for(request),
        )
        return Response({"since": since.isoformat(), "nhs_numbers": numbers})
