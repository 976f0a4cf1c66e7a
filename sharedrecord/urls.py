"""Top-level routes: explicit path() lists per app, no routers (STYLE.md section 12)."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from sharedrecord.apis import HealthzApi, ReadyzApi

urlpatterns = [
    path("healthz", HealthzApi.as_view(), name="healthz"),
    path("readyz", ReadyzApi.as_view(), name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/feeds/", include("ingestion.urls", namespace="feeds")),
    path("api/v1/optouts/", include("optout.urls", namespace="optouts")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
