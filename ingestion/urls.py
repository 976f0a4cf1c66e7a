from django.urls import path

from ingestion.apis import FeedFhirApi, FeedReceiptApi

app_name = "feeds"
urlpatterns = [
    path("fhir", FeedFhirApi.as_view(), name="fhir"),
    path("receipts/<uuid:receipt_id>", FeedReceiptApi.as_view(), name="receipt"),
]
