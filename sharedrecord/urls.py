"""Top-level routes: explicit path() lists per app, no routers (STYLE.md section 12)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from sharedrecord.apis import HealthzApi, ReadyzApi
from sharedrecord.views import home_page, patient_search_page

urlpatterns = [
    path("", home_page, name="home"),
    path("search", patient_search_page, name="search"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("optouts/", include("optout.page_urls", namespace="optout-pages")),
    path("healthz", HealthzApi.as_view(), name="healthz"),
    path("readyz", ReadyzApi.as_view(), name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/feeds/", include("ingestion.urls", namespace="feeds")),
    path("api/v1/optouts/", include("optout.urls", namespace="optouts")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
