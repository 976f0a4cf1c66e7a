"""The data quality workbench's API, for officers' own tools: the same services as the pages."""

from __future__ import annotations

import uuid
from typing import Any, cast

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.context import context_for
from ingestion.models import ParkState
from ingestion.workbench import (
    CORRECTION_REASONS,
    REJECT_REASONS,
    CaseView,
    Decision,
    ParkedCase,
    parked_case_correction_request,
    parked_case_file,
    parked_case_reject,
    parked_case_view,
    parked_cases,
    parked_waiting_counts,
)
from ingestion.workbench_views import workbench_scope
from sharedrecord.models import User


class CaseOutput(serializers.Serializer[ParkedCase]):
    id = serializers.UUIDField(source="group")
    sender = serializers.CharField(source="sender_ods")
    receipt = serializers.UUIDField()
    reason = serializers.CharField()
    state = serializers.CharField()
    entries = serializers.IntegerField()
    resource_types = serializers.SerializerMethodField()
    parked_at = serializers.DateTimeField()
    overdue = serializers.BooleanField()
    decided_at = serializers.DateTimeField()
    decision_code = serializers.CharField()

    def get_resource_types(self, case: ParkedCase) -> dict[str, int]:
        return dict(case.resource_types)


class CaseListOutput(serializers.Serializer[Any]):
    waiting = serializers.IntegerField()
    overdue = serializers.IntegerField()
    waiting_by_reason = serializers.DictField(child=serializers.IntegerField())
    cases = CaseOutput(many=True)


class WorkbenchCaseListApi(APIView):
    """The officer's cases in one state (default: waiting), oldest first, with the counts."""

    @extend_schema(
        operation_id="workbench_cases_list",
        parameters=[OpenApiParameter("state", str, enum=ParkState.values)],
        responses=CaseListOutput,
    )
    def get(self, request: Request) -> Response:
        scope = workbench_scope(request)
        state = request.query_params.get("state", ParkState.PARKED)
        if state not in ParkState.values:
            state = ParkState.PARKED
        counts = parked_waiting_counts(scope=scope)
        cases = parked_cases(scope=scope, state=state)
        return Response(
            {
                "waiting": counts.waiting,
                "overdue": counts.overdue,
                "waiting_by_reason": dict(counts.by_reason),
                "cases": CaseOutput(cases, many=True).data,  # type: ignore[arg-type]
            }
        )


class WorkbenchCaseDetailApi(APIView):
    """One case: what was sent about the person, the candidates and why (an audited read)."""

    @extend_schema_serializer(component_name="WorkbenchCase")
    class OutputSerializer(serializers.Serializer[CaseView]):
        """A case, what was sent about the person, and the candidates with their scores."""

        case = CaseOutput()
        sent = serializers.SerializerMethodField()
        identifiers = serializers.SerializerMethodField()
        patient_source_id = serializers.CharField()
        candidates = serializers.SerializerMethodField()
        fileable = serializers.BooleanField()

        def get_sent(self, view: CaseView) -> dict[str, Any]:
            sent = view.sent
            return {
                "nhs_number": sent.nhs_number, "family": sent.family, "given": sent.given,
                "birth_date": sent.birth_date.isoformat() if sent.birth_date else None,
                "postcode": sent.postcode, "gender": sent.gender,
            }  # fmt: skip

        def get_identifiers(self, view: CaseView) -> list[dict[str, str]]:
            return [{"system": s, "value": v} for s, v in view.identifiers]

        def get_candidates(self, view: CaseView) -> list[dict[str, Any]]:
            return [
                {
                    "id": str(c.patient.public_id),
                    "nhs_number": c.patient.nhs_number,
                    "family": c.patient.family_name,
                    "given": c.patient.given_names,
                    "birth_date": c.patient.birth_date.isoformat()
                    if c.patient.birth_date
                    else None,
                    "postcode": c.patient.postcode,
                    "score": c.score,
                    "certain": c.certain,
                    "agreeing": list(c.agreeing),
                    "disagreeing": list(c.disagreeing),
                }
                for c in view.candidates
            ]

    @extend_schema(operation_id="workbench_case_read", responses=OutputSerializer)
    def get(self, request: Request, group: uuid.UUID) -> Response:
        scope = workbench_scope(request)
        view = parked_case_view(
            viewer=cast(User, request.user), scope=scope, group=group, context=context_for(request)
        )
        return Response(self.OutputSerializer(view).data)


class DecisionOutput(serializers.Serializer[Decision]):
    state = serializers.CharField()
    entries = serializers.IntegerField()
    patient = serializers.UUIDField(source="patient.public_id", default=None)
    counts = serializers.DictField(child=serializers.IntegerField(), default=None)


class WorkbenchCaseFileApi(APIView):
    """File a case to a person (NHS number or a candidate's id), with a reason."""

    @extend_schema_serializer(component_name="WorkbenchFileInput")
    class InputSerializer(serializers.Serializer[Any]):
        nhs_number = serializers.CharField(max_length=20, required=False, default="")
        candidate = serializers.UUIDField(required=False, default=None)
        reason = serializers.CharField(max_length=500)

    @extend_schema(request=InputSerializer, responses=DecisionOutput)
    def post(self, request: Request, group: uuid.UUID) -> Response:
        scope = workbench_scope(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        candidate = data.validated_data["candidate"]
        done = parked_case_file(
            viewer=cast(User, request.user), scope=scope, group=group,
            reason=data.validated_data["reason"], nhs_number=data.validated_data["nhs_number"],
            patient_id=str(candidate) if candidate else "", context=context_for(request),
        )  # fmt: skip
        return Response(DecisionOutput(done).data)


class WorkbenchCaseRejectApi(APIView):
    """Reject a case with a reason code (the sender reads it on its receipt)."""

    @extend_schema_serializer(component_name="WorkbenchRejectInput")
    class InputSerializer(serializers.Serializer[Any]):
        code = serializers.ChoiceField(choices=sorted(REJECT_REASONS))
        note = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)

    @extend_schema(request=InputSerializer, responses=DecisionOutput)
    def post(self, request: Request, group: uuid.UUID) -> Response:
        scope = workbench_scope(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        done = parked_case_reject(
            viewer=cast(User, request.user), scope=scope, group=group,
            context=context_for(request), **data.validated_data,
        )  # fmt: skip
        return Response(DecisionOutput(done).data)


class WorkbenchCaseCorrectionApi(APIView):
    """Ask the sender to correct a case and send it again (a code it reads on its receipt)."""

    @extend_schema_serializer(component_name="WorkbenchCorrectionInput")
    class InputSerializer(serializers.Serializer[Any]):
        code = serializers.ChoiceField(choices=sorted(CORRECTION_REASONS))
        note = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)

    @extend_schema(request=InputSerializer, responses=DecisionOutput)
    def post(self, request: Request, group: uuid.UUID) -> Response:
        scope = workbench_scope(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        done = parked_case_correction_request(
            viewer=cast(User, request.user), scope=scope, group=group,
            context=context_for(request), **data.validated_data,
        )  # fmt: skip
        return Response(DecisionOutput(done).data)
