from django.urls import path

from audit import apis

app_name = "audit-api"
urlpatterns = [
    path("events", apis.AuditEventListApi.as_view(), name="events"),
    path("events.csv", apis.AuditEventExportApi.as_view(), name="export"),
    path("reviews", apis.ReviewQueueApi.as_view(), name="reviews"),
    path("subject-access", apis.SubjectAccessApi.as_view(), name="subject-access"),
    path("fhir/AuditEvent", apis.FhirAuditEventSearchApi.as_view(), name="fhir-search"),
    path("fhir/AuditEvent/<int:event_id>", apis.FhirAuditEventReadApi.as_view(), name="fhir-read"),
]
