"""Routes of the FHIR R4 read API, under /fhir/R4/ (docs/architecture.md, "Public interfaces")."""

from django.urls import path

from sharedrecord.fhirapi.views import (
    CapabilityStatementApi,
    EntryReadApi,
    PatientEverythingApi,
    PatientPostSearchApi,
    PatientReadApi,
    PatientSearchApi,
    SmartConfigurationApi,
    TypeSearchApi,
)
from sharedrecord.notifications.fhir import (
    SubscriptionCreateApi,
    SubscriptionEventsApi,
    SubscriptionReadApi,
    SubscriptionStatusApi,
    SubscriptionTopicReadApi,
    SubscriptionTopicSearchApi,
)

app_name = "fhir"

urlpatterns = [
    path("metadata", CapabilityStatementApi.as_view(), name="metadata"),
    path(
        ".well-known/smart-configuration",
        SmartConfigurationApi.as_view(),
        name="smart-configuration",
    ),
    path("Patient", PatientSearchApi.as_view(), name="patient-search"),
    path("Patient/_search", PatientPostSearchApi.as_view(), name="patient-post-search"),
    path(
        "Patient/<str:patient_id>/$everything",
        PatientEverythingApi.as_view(),
        name="patient-everything",
    ),
    path("Patient/<str:patient_id>", PatientReadApi.as_view(), name="patient-read"),
    # Notifications (R4B Subscriptions Backport IG shape): before the generic type routes.
    path("SubscriptionTopic", SubscriptionTopicSearchApi.as_view(), name="topic-search"),
    path("SubscriptionTopic/<str:topic>", SubscriptionTopicReadApi.as_view(), name="topic-read"),
    path("Subscription", SubscriptionCreateApi.as_view(), name="subscription-create"),
    path(
        "Subscription/<str:subscription_id>/$status",
        SubscriptionStatusApi.as_view(),
        name="subscription-status",
    ),
    path(
        "Subscription/<str:subscription_id>/$events",
        SubscriptionEventsApi.as_view(),
        name="subscription-events",
    ),
    path(
        "Subscription/<str:subscription_id>",
        SubscriptionReadApi.as_view(),
        name="subscription-read",
    ),
    path("<str:resource_type>", TypeSearchApi.as_view(), name="type-search"),
    path("<str:resource_type>/<str:entry_id>", EntryReadApi.as_view(), name="entry-read"),
]
