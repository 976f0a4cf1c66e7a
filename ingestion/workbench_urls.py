"""The data quality workbench's pages (under /workbench/)."""

from django.urls import path

from ingestion import workbench_views

app_name = "workbench"
urlpatterns = [
    path("", workbench_views.workbench_page, name="list"),
    path("<uuid:group>", workbench_views.workbench_case_page, name="case"),
    path("identity", workbench_views.workbench_identity_page, name="identity"),
    path("disputes", workbench_views.workbench_disputes_page, name="disputes"),
]
