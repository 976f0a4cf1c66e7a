"""The data quality workbench's API, for officers' own tools: the same services as the pages."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.context import context_for
from audit.models import AuditAction
from audit.trail import audit_event_record
from ingestion.models import ParkState
from ingestion.workbench import (
    CORRECTION_REASONS,
    REJECT_REASONS,
    CaseView,
    Decision,
    ParkedCase,
    identity_merge,
    identity_operations,
    identity_undo,
    parked_case_correction_request,
    parked_case_file,
    parked_case_reject,
    parked_case_view,
    parked_cases,
    parked_waiting_counts,
)
from ingestion.workbench_views import workbench_scope
from sharedrecord.auditing import actor_for
from sharedrecord.identity import Merged
from sharedrecord.models import IdentityKind, IdentityOperation, User


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


class _WorkbenchCaseDeclineApi(APIView):
    """Close a case storing nothing, with a reason code the sender reads on its receipt."""

    InputSerializer: type[serializers.Serializer[Any]]
    decide: Callable[..., Decision]

    def post(self, request: Request, group: uuid.UUID) -> Response:
        scope = workbench_scope(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        done = self.decide(
            viewer=cast(User, request.user), scope=scope, group=group,
            context=context_for(request), **data.validated_data,
        )  # fmt: skip
        return Response(DecisionOutput(done).data)


class WorkbenchCaseRejectApi(_WorkbenchCaseDeclineApi):
    """Reject a case with a reason code (the sender reads it on its receipt)."""

    @extend_schema_serializer(component_name="WorkbenchRejectInput")
    class InputSerializer(serializers.Serializer[Any]):
        code = serializers.ChoiceField(choices=sorted(REJECT_REASONS))
        note = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)

    decide = staticmethod(parked_case_reject)

    @extend_schema(request=InputSerializer, responses=DecisionOutput)
    def post(self, request: Request, group: uuid.UUID) -> Response:
        return super().post(request, group)


class WorkbenchCaseCorrectionApi(_WorkbenchCaseDeclineApi):
    """Ask the sender to correct a case and send it again (a code it reads on its receipt)."""

    @extend_schema_serializer(component_name="WorkbenchCorrectionInput")
    class InputSerializer(serializers.Serializer[Any]):
        code = serializers.ChoiceField(choices=sorted(CORRECTION_REASONS))
        note = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)

    decide = staticmethod(parked_case_correction_request)

    @extend_schema(request=InputSerializer, responses=DecisionOutput)
    def post(self, request: Request, group: uuid.UUID) -> Response:
        return super().post(request, group)


class IdentityOperationOutput(serializers.Serializer[IdentityOperation]):
    id = serializers.UUIDField(source="public_id")
    kind = serializers.CharField()
    from_nhs_number = serializers.CharField()
    to_nhs_number = serializers.CharField()
    sender = serializers.CharField(source="source_org.ods_code", default=None)
    actor = serializers.CharField()
    blocked = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    undone_at = serializers.DateTimeField()


class WorkbenchIdentityListApi(APIView):
    """The most recent merges and links, newest first (the programme's officers; audited)."""

    @extend_schema(
        operation_id="workbench_identity_list", responses=IdentityOperationOutput(many=True)
    )
    def get(self, request: Request) -> Response:
        scope = workbench_scope(request)
        operations = identity_operations(scope=scope)
        audit_event_record(
            action=AuditAction.MATCH_QUEUE_VIEW,
            actor=actor_for(cast(User, request.user)),
            detail={
                "list": "identity-operations",
                "operations": [str(o.public_id) for o in operations],
            },
            context=context_for(request),
        )
        return Response(IdentityOperationOutput(operations, many=True).data)  # type: ignore[arg-type]


@extend_schema_serializer(component_name="WorkbenchIdentityInput")
class IdentityInput(serializers.Serializer[Any]):
    from_nhs_number = serializers.CharField(max_length=20)
    to_nhs_number = serializers.CharField(max_length=20)
    reason = serializers.CharField(max_length=500)


class MergedOutput(serializers.Serializer[Merged]):
    operation = serializers.UUIDField(source="operation.public_id")
    survivor = serializers.UUIDField(source="survivor.public_id", default=None)
    entries = serializers.IntegerField()
    blocked = serializers.BooleanField(source="operation.blocked")


def _identity(request: Request, kind: str) -> Response:
    scope = workbench_scope(request)
    data = IdentityInput(data=request.data)
    data.is_valid(raise_exception=True)
    done = identity_merge(
        viewer=cast(User, request.user), scope=scope, kind=kind, context=context_for(request),
        **data.validated_data,
    )  # fmt: skip
    return Response(MergedOutput(done).data, status=201)


class WorkbenchIdentityMergeApi(APIView):
    """Merge one person into another: every source's entries move (undoable exactly)."""

    @extend_schema(request=IdentityInput, responses={201: MergedOutput})
    def post(self, request: Request) -> Response:
        return _identity(request, IdentityKind.MERGE)


class WorkbenchIdentityLinkApi(APIView):
    """Record that two NHS numbers are one person; nothing moves (undoable)."""

    @extend_schema(request=IdentityInput, responses={201: MergedOutput})
    def post(self, request: Request) -> Response:
        return _identity(request, IdentityKind.LINK)


class WorkbenchIdentityUndoApi(APIView):
    """Unmerge or unlink: put back exactly what the operation moved."""

    @extend_schema(request=None, responses=IdentityOperationOutput)
    def post(self, request: Request, operation_id: uuid.UUID) -> Response:
        scope = workbench_scope(request)
        done = identity_undo(
            viewer=cast(User, request.user), scope=scope, operation_id=operation_id,
            context=context_for(request),
        )  # fmt: skip
        return Response(IdentityOperationOutput(done).data)
