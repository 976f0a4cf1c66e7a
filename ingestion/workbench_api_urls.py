"""The data quality workbench's API (under /api/v1/workbench/)."""

from django.urls import path

from ingestion import workbench_apis

app_name = "workbench-api"
urlpatterns = [
    path("cases", workbench_apis.WorkbenchCaseListApi.as_view(), name="cases"),
    path("cases/<uuid:group>", workbench_apis.WorkbenchCaseDetailApi.as_view(), name="case"),
    path("cases/<uuid:group>/file", workbench_apis.WorkbenchCaseFileApi.as_view(), name="file"),
    path(
        "cases/<uuid:group>/reject", workbench_apis.WorkbenchCaseRejectApi.as_view(), name="reject"
    ),
    path(
        "cases/<uuid:group>/correction",
        workbench_apis.WorkbenchCaseCorrectionApi.as_view(),
        name="correction",
    ),
    path("identity", workbench_apis.WorkbenchIdentityListApi.as_view(), name="identity"),
    path(
        "identity/merge", workbench_apis.WorkbenchIdentityMergeApi.as_view(), name="identity-merge"
    ),
    path("identity/link", workbench_apis.WorkbenchIdentityLinkApi.as_view(), name="identity-link"),
    path(
        "identity/<uuid:operation_id>/undo",
        workbench_apis.WorkbenchIdentityUndoApi.as_view(),
        name="identity-undo",
    ),
]
