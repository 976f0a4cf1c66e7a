"""Top-level routes: explicit path() lists per app, no routers (STYLE.md section 12)."""

from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from sharedrecord.admin import admin_sign_in, admin_sign_out
from sharedrecord.apis import HealthzApi, ReadyzApi
from sharedrecord.launch_views import launch_page
from sharedrecord.metrics import metrics_page
from sharedrecord.oauth import views as oauth
from sharedrecord.smart_launch import smart_callback_page, smart_launch_page
from sharedrecord.sso import views as sso
from sharedrecord.views import (
    SignInView,
    SignOutView,
    access_basis_page,
    break_glass_page,
    home_page,
    patient_search_page,
    record_document_page,
    record_page,
    record_section_page,
    record_timeline_page,
    residents_page,
    roles_help_page,
    session_status,
    session_timed_out,
    sign_in_code_page,
)

# DOT's views, held to what the SMART configuration advertises, audited (sharedrecord/oauth/).
OAUTH2_ROUTES = [
    path("authorize/", oauth.SmartAuthorizationView.as_view(), name="authorize"),
    path("token/", oauth.SmartTokenView.as_view(), name="token"),
    path("revoke_token/", oauth.SmartRevokeTokenView.as_view(), name="revoke-token"),
    path("introspect/", oauth.SmartIntrospectTokenView.as_view(), name="introspect"),
]

urlpatterns = [
    path("", home_page, name="home"),
    path("search", patient_search_page, name="search"),
    path("accounts/login/", SignInView.as_view(), name="login"),
    path("accounts/logout/", SignOutView.as_view(), name="logout"),
    path("accounts/code", sign_in_code_page, name="sign-in-code"),
    path("accounts/session", session_status, name="session-status"),
    # Single sign-on (sharedrecord/sso/): 404 unless OIDC_ISSUER is set.
    path("accounts/oidc/start", sso.sso_start, name="sso-start"),
    path("accounts/oidc/callback", sso.sso_callback, name="sso-callback"),
    path("accounts/oidc/role", sso.sso_role_page, name="sso-role"),
    # Launch in context from the clinician's own system (sharedrecord/launch_views.py).
    path("launch", launch_page, name="launch"),
    path("smart/launch", smart_launch_page, name="smart-launch"),
    path("smart/callback", smart_callback_page, name="smart-callback"),
    path("accounts/timed-out", session_timed_out, name="session-timed-out"),
    path("help/roles", roles_help_page, name="roles-help"),
    path("about", residents_page, name="residents"),
    # The access basis: the only record-related pages that take a POST.
    path("access/<uuid:patient_id>/", access_basis_page, name="access-basis"),
    path("access/<uuid:patient_id>/emergency", break_glass_page, name="break-glass"),
    # The record itself: GET only (tests/sharedrecord/test_read_only.py).
    path("record/<uuid:patient_id>/", record_page, name="record"),
    path("record/<uuid:patient_id>/timeline", record_timeline_page, name="record-timeline"),
    path("record/<uuid:patient_id>/<slug:section>", record_section_page, name="record-section"),
    path(
        "record/<uuid:patient_id>/documents/<uuid:entry_id>",
        record_document_page,
        name="record-document",
    ),
    path("optouts/", include("optout.page_urls", namespace="optout-pages")),
    path("notifications/", include("sharedrecord.notifications.urls", namespace="notifications")),
    path("governance/", include("audit.page_urls", namespace="governance")),
    path("workbench/", include("ingestion.workbench_urls", namespace="workbench")),
    path("operations/", include("ingestion.page_urls", namespace="operations")),
    path("healthz", HealthzApi.as_view(), name="healthz"),
    path("readyz", ReadyzApi.as_view(), name="readyz"),
    path("metrics", metrics_page, name="metrics"),
    # The admin's own sign-in and sign-out, audited like the staff pages' (sharedrecord/admin.py).
    path("admin/login/", admin_sign_in, name="admin-sign-in"),
    path("admin/logout/", admin_sign_out, name="admin-sign-out"),
    path("admin/", admin.site.urls),
    path("api/v1/feeds/", include("ingestion.urls", namespace="feeds")),
    path("api/v1/optouts/", include("ingestion.optin_urls", namespace="optins")),
    path("api/v1/optouts/", include("optout.urls", namespace="optouts")),
    path("api/v1/audit/", include("audit.urls", namespace="audit-api")),
    path("api/v1/workbench/", include("ingestion.workbench_api_urls", namespace="workbench-api")),
    path("fhir/R4/", include("sharedrecord.fhirapi.urls", namespace="fhir")),
    # OAuth2 for the read API: only what a client needs. No device flow, and no
    # application-management pages (manage.py api_client_register registers them).
    path("o/", include((OAUTH2_ROUTES, "oauth2_provider"), namespace="oauth2_provider")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file: no inline script under the CSP.
    # Swagger UI's page carries a <style> block, so this page alone allows inline styles.
    path(
        "api/docs/",
        csp_update({"style-src": ["'unsafe-inline'"]})(
            SpectacularSwaggerSplitView.as_view(url_name="schema")
        ),
        name="api-docs",
    ),
]

# Unmatched URLs and unreadable requests answer in the shape of where they were
# sent (an OperationOutcome under /fhir/, the error object under /api/), not HTML.
handler404 = "sharedrecord.apis.not_found"
handler400 = "sharedrecord.apis.bad_request"
handler500 = "sharedrecord.apis.server_error"
