"""The opted-in feed's route, under /api/v1/optouts/ beside the registry's own."""

from django.urls import path

from ingestion.optin_apis import OptInsSinceApi

app_name = "optins"
urlpatterns = [
    path("opted-in", OptInsSinceApi.as_view(), name="opted-in"),
]
