from django.urls import path

from ingestion.apis import FeedFhirApi, FeedHl7v2Api, FeedReceiptApi

app_name = "feeds"
urlpatterns = [
    path("fhir", FeedFhirApi.as_view(), name="fhir"),
    path("hl7v2", FeedHl7v2Api.as_view(), name="hl7v2"),
    path("receipts/<uuid:receipt_id>", FeedReceiptApi.as_view(), name="receipt"),
]
