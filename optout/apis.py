"""The opt-out registry API, for GP practice staff and practice systems."""

from __future__ import annotations

from typing import Any, cast

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.context import context_for
from audit.csvstream import csv_lines
from optout.models import RECEIVED_ROUTES, OptOut, OptOutChange, OptOutRoute, OptOutStatus
from optout.services import (
    OptOutCheck,
    objections_office_of,
    optout_check,
    optout_denied_audit,
    optout_objection_check,
    optout_objection_register,
    optout_register,
    optout_withdraw,
    practice_of,
)
from optout.viewing import optout_entry_view, optout_export, optout_list_view
from sharedrecord.exceptions import PatientNotFound, PermissionDenied
from sharedrecord.models import Organisation, User


class OptOutOutput(serializers.Serializer[OptOut]):
    id = serializers.UUIDField(source="public_id")
    nhs_number = serializers.CharField()
    status = serializers.CharField()
    practice = serializers.CharField(source="practice.ods_code")
    route = serializers.CharField()
    note = serializers.CharField()
    changed_at = serializers.DateTimeField()


class ChangeOutput(serializers.Serializer[Any]):
    status = serializers.CharField()
    practice = serializers.CharField(source="practice.ods_code")
    route = serializers.CharField()
    note = serializers.CharField()
    recorded_by = serializers.SerializerMethodField()
    recorded_at = serializers.DateTimeField()

    def get_recorded_by(self, change: OptOutChange) -> str:
        return (
            change.recorded_by.get_username() if change.recorded_by else change.recorded_by_system
        )


def _practice(request: Request, action: str) -> Organisation:
    """The caller's practice, or a 403 that is itself audited."""
    user = cast(User, request.user)
    try:
        return practice_of(user)
    except PermissionDenied:
        optout_denied_audit(user=user, action=action, context=context_for(request))
        raise


def _office(request: Request, action: str) -> Organisation:
    """The caller's programme organisation (objections officers), or an audited 403."""
    user = cast(User, request.user)
    try:
        return objections_office_of(user)
    except PermissionDenied:
        optout_denied_audit(user=user, action=action, context=context_for(request))
        raise


class ChangeInput(serializers.Serializer[Any]):
    nhs_number = serializers.CharField(max_length=20)
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class CheckInput(serializers.Serializer[Any]):
    nhs_number = serializers.CharField(max_length=20)


class IdentityOutput(serializers.Serializer[OptOutCheck]):
    """Who the number is in the record; blank (found false) when it matches no record held."""

    nhs_number = serializers.CharField()
    found = serializers.SerializerMethodField()
    family_name = serializers.CharField(source="identity.family_name", default="")
    given_names = serializers.CharField(source="identity.given_names", default="")
    birth_date = serializers.DateField(source="identity.birth_date", default=None)
    address = serializers.CharField(source="identity.address", default="")
    postcode = serializers.CharField(source="identity.postcode", default="")

    def get_found(self, check: OptOutCheck) -> bool:
        return check.identity is not None


class OptOutCheckOutput(IdentityOutput):
    registration = serializers.SerializerMethodField()

    def get_registration(self, check: OptOutCheck) -> str:
        return "own" if check.registration_known else "unknown"


class OptOutCheckApi(APIView):
    """Before recording an opt-out: who the NHS number is in the record (an audited read).

    Refused (403, without saying where) for someone registered with another
    practice. "registration" is "unknown" when the record does not know the
    person's practice: an opt-out for them goes to the programme's review.
    """

    @extend_schema(request=CheckInput, responses={200: OptOutCheckOutput})
    def post(self, request: Request) -> Response:
        practice = _practice(request, "opt-out-check")
        data = CheckInput(data=request.data)
        data.is_valid(raise_exception=True)
        check = optout_check(
            practice=practice,
            viewer=cast(User, request.user),
            context=context_for(request),
            **data.validated_data,
        )
        return Response(OptOutCheckOutput(check).data)


class OptOutRegisterApi(APIView):
    """Record an opt-out for the caller's practice; removes the person's record at once.

    Answers only from the caller's own entry: 201 when it is recorded now,
    200 when the practice had already recorded it, whatever other practices hold.
    """

    @extend_schema(request=ChangeInput, responses={201: OptOutOutput, 200: OptOutOutput})
    def post(self, request: Request) -> Response:
        practice = _practice(request, "opt-out")
        data = ChangeInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = cast(User, request.user)
        try:
            result = optout_register(
                practice=practice,
                route=OptOutRoute.PRACTICE_SYSTEM,
                recorded_by=user,
                context=context_for(request),
                **data.validated_data,
            )
        except PermissionDenied:
            optout_denied_audit(
                user=user, action="opt-out", reason="not-registered-here",
                context=context_for(request),
            )  # fmt: skip
            raise
        return Response(OptOutOutput(result.optout).data, status=201 if result.changed else 200)


class OptOutWithdrawApi(APIView):
    """Record that the person opts back in, on the caller's practice's own entry.

    Without one, 400 with the same message whatever other practices hold.
    """

    @extend_schema(request=ChangeInput, responses={200: OptOutOutput})
    def post(self, request: Request) -> Response:
        data = ChangeInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = optout_withdraw(
            practice=_practice(request, "opt-in"),
            route=OptOutRoute.PRACTICE_SYSTEM,
            recorded_by=cast(User, request.user),
            context=context_for(request),
            **data.validated_data,
        )
        return Response(OptOutOutput(result.optout).data)


class OptOutListApi(APIView):
    """The caller's practice's entries, newest change first (search by NHS number prefix)."""

    PAGE = 50

    @extend_schema(
        parameters=[
            OpenApiParameter("search", str, description="NHS number or its start"),
            OpenApiParameter("page", int),
        ],
        responses={200: OptOutOutput(many=True)},
    )
    def get(self, request: Request) -> Response:
        practice = _practice(request, "list")
        page = serializers.IntegerField(min_value=1, max_value=100_000).run_validation(
            request.query_params.get("page") or 1
        )
        shown = optout_list_view(
            viewer=cast(User, request.user), practice=practice,
            search=request.query_params.get("search", ""), page=page, page_size=self.PAGE,
            context=context_for(request),
        )  # fmt: skip
        results = [OptOutOutput(row).data for row in shown.entries]
        return Response({"count": shown.total, "page": page, "results": results})


class OptOutDetailApi(APIView):
    """One entry of the caller's practice with its full history."""

    @extend_schema(responses={200: OptOutOutput})
    def get(self, request: Request, optout_id: str) -> Response:
        practice = _practice(request, "view")
        shown = optout_entry_view(
            viewer=cast(User, request.user), practice=practice, optout_id=optout_id,
            context=context_for(request),
        )  # fmt: skip
        if shown is None:
            raise PatientNotFound("No such opt-out entry for your practice.")
        history = ChangeOutput(shown.history, many=True).data
        return Response({**OptOutOutput(shown.entry).data, "history": history})


class OptOutExportApi(APIView):
    """The practice's whole list as CSV, streamed."""

    @extend_schema(responses={(200, "text/csv"): str})
    def get(self, request: Request) -> StreamingHttpResponse:
        practice = _practice(request, "export")
        entries = optout_export(
            viewer=cast(User, request.user), practice=practice, context=context_for(request)
        )
        rows = (
            [e.nhs_number, e.status, e.route, e.changed_at.isoformat(), e.note] for e in entries
        )
        header = ["nhs_number", "status", "route", "changed_at", "note"]
        response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv")
        stamp = timezone.localdate().isoformat()
        response["Content-Disposition"] = (
            f'attachment; filename="optouts-{practice.ods_code}-{stamp}.csv"'
        )
        return response


# ------------------------------------------------------------------ objections (programme team)


class ObjectionCheckInput(serializers.Serializer[Any]):
    nhs_number = serializers.CharField(max_length=20)
    practice = serializers.CharField(
        max_length=12,
        required=False,
        allow_blank=True,
        default="",
        help_text="ODS code of the person's GP practice; only when the record does not know it.",
    )


class ObjectionInput(ObjectionCheckInput):
    received = serializers.ChoiceField(choices=sorted(RECEIVED_ROUTES))
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class ObjectionCheckOutput(IdentityOutput):
    registration = serializers.SerializerMethodField()
    practice = serializers.CharField(source="practice.ods_code")
    practice_name = serializers.CharField(source="practice.name")

    def get_registration(self, check: OptOutCheck) -> str:
        return "known" if check.registration_known else "unknown"


class ObjectionOutput(serializers.Serializer[dict[str, str]]):
    """What the programme team is told: recorded, for which practice. Nothing of its registry."""

    nhs_number = serializers.CharField()
    status = serializers.CharField()
    practice = serializers.CharField()
    route = serializers.CharField()


class OptOutObjectionCheckApi(APIView):
    """For the programme's objections officers: who the number is, and for which practice.

    An audited read. When the record does not know the registration, name the
    practice (400 asks for it).
    """

    @extend_schema(request=ObjectionCheckInput, responses={200: ObjectionCheckOutput})
    def post(self, request: Request) -> Response:
        _office(request, "objection-check")
        data = ObjectionCheckInput(data=request.data)
        data.is_valid(raise_exception=True)
        check = optout_objection_check(
            nhs_number=data.validated_data["nhs_number"],
            practice_ods=data.validated_data["practice"],
            officer=cast(User, request.user),
            context=context_for(request),
        )
        return Response(ObjectionCheckOutput(check).data)


class OptOutObjectionRecordApi(APIView):
    """For the programme's objections officers: record an objection taken by phone or e-mail.

    Recorded for the person's registered practice (or the one named when the
    record does not know it; then flagged for review). Always 201 with the
    same body, whether or not the practice had already recorded an opt-out.
    """

    @extend_schema(request=ObjectionInput, responses={201: ObjectionOutput})
    def post(self, request: Request) -> Response:
        _office(request, "objection")
        data = ObjectionInput(data=request.data)
        data.is_valid(raise_exception=True)
        route = RECEIVED_ROUTES[data.validated_data["received"]]
        result = optout_objection_register(
            nhs_number=data.validated_data["nhs_number"],
            route=route,
            practice_ods=data.validated_data["practice"],
            note=data.validated_data["note"],
            recorded_by=cast(User, request.user),
            context=context_for(request),
        )
        # Built from the request, not the entry: the practice's own route,
        # note and times stay the practice's.
        recorded = {
            "nhs_number": result.optout.nhs_number,
            "status": OptOutStatus.OPTED_OUT,
            "practice": result.optout.practice.ods_code,
            "route": route,
        }
        return Response(ObjectionOutput(recorded).data, status=201)
