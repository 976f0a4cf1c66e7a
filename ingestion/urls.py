from django.urls import path

from ingestion.apis import FeedFhirApi, FeedHealthApi, FeedHl7v2Api, FeedParkedApi, FeedReceiptApi

app_name = "feeds"
urlpatterns = [
    path("fhir", FeedFhirApi.as_view(), name="fhir"),
    path("hl7v2", FeedHl7v2Api.as_view(), name="hl7v2"),
    # The sender's parked entries and the data quality team's decisions.
    path("parked", FeedParkedApi.as_view(), name="parked"),
    path("health", FeedHealthApi.as_view(), name="health"),
    # Any text, so a malformed id is answered by the view as an OperationOutcome 404
    # rather than by Django's HTML one.
    path("receipts/<path:receipt_id>", FeedReceiptApi.as_view(), name="receipt"),
]
