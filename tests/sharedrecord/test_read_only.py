"""No record route accepts a write: the combined record is read-only (the sources own it)."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.urlwalk import walk

pytestmark = pytest.mark.django_db

UUID = "00000000-0000-0000-0000-000000000001"  # tests/urlwalk.py's placeholder

# Every route outside /record/ (whose routes are all checked for 405 below), by the exact
# path the walker renders, with what a write to it does. A new route fails the test until
# someone classifies it here: a prefix would let a new write under it through unseen.
ROUTES = {
    "/": "the home page: read-only",
    "/search": "the search form (POST keeps NHS numbers out of URLs); writes only audit",
    "/accounts/login/": "sign-in",
    "/accounts/logout/": "sign-out",
    "/accounts/session": "the session's remaining time: read-only",
    "/accounts/code": "the second factor after a password: signs in, writes no record",
    "/smart/launch": "SMART EHR launch: sends the browser to the EHR (no record written)",
    "/smart/callback": "SMART EHR launch: signs in, records a basis, never writes the record",
    "/launch": "signed launch (POST): signs in, records a basis, never writes the record",
    "/accounts/oidc/start": "single sign-on: starts a sign-in",
    "/accounts/oidc/callback": "single sign-on: finishes a sign-in",
    "/accounts/oidc/role": "single sign-on: the role chosen for this sign-in",
    "/accounts/timed-out": "the idle sign-out (POST)",
    "/help/roles": "the roles table: read-only",
    "/about": "the residents' page: read-only (GET only)",
    f"/access/{UUID}/": "the access basis (audited)",
    f"/access/{UUID}/emergency": "emergency access (audited)",
    "/optouts/": "the opt-out registry (GP practices)",
    "/optouts/record": "recording an opt-out (GP practices)",
    "/optouts/objections/": "recording an objection (GP practices)",
    f"/optouts/{UUID}": "one opt-out: read-only",
    f"/optouts/{UUID}/opt-in": "withdrawing an opt-out (GP practices)",
    "/governance/": "the governance home: read-only",
    "/governance/events": "searching the trail: writes only audit",
    "/governance/events.csv": "exporting the trail: writes only audit",
    "/governance/events/1": "a privacy officer's finding on a flagged access (never the record)",
    "/governance/reviews": "the review queue: read-only",
    "/governance/subject-access": "a subject access report: writes only audit",
    "/healthz": "liveness: read-only",
    "/readyz": "readiness: read-only",
    "/metrics": "Prometheus metrics: read-only",
    "/operations/feeds": "feed health: read-only",
    f"/operations/feeds/replay/{UUID}": "replaying a failed message: queues it again, audited",
    "/api/v1/feeds/health": "feed health: read-only",
    "/api/v1/feeds/fhir": "a partner's FHIR feed (the sources own the record)",
    "/api/v1/feeds/hl7v2": "a partner's HL7 v2 feed (the sources own the record)",
    "/api/v1/feeds/receipts/x": "a feed receipt: read-only",
    "/api/v1/feeds/parked": "a sender's parked entries and their decisions: read-only",
    "/workbench/": "the data quality workbench's front page: read-only",
    f"/workbench/{UUID}": "one parked case: its decisions file, reject or ask for a correction",
    "/api/v1/workbench/cases": "parked cases: read-only",
    f"/api/v1/workbench/cases/{UUID}": "one parked case: read-only (audited)",
    f"/api/v1/workbench/cases/{UUID}/file": "filing a parked case to a person (data quality)",
    f"/api/v1/workbench/cases/{UUID}/reject": "rejecting a parked case (data quality)",
    f"/api/v1/workbench/cases/{UUID}/correction": "asking a sender to correct (data quality)",
    "/workbench/disputes": "people whose sources disagree: read-only (audited)",
    "/workbench/identity": "merging, linking and undoing people (data quality, recorded)",
    "/api/v1/workbench/identity": "merges and links: read-only (audited)",
    "/api/v1/workbench/identity/merge": "merging people (data quality; undone exactly)",
    "/api/v1/workbench/identity/link": "linking people (data quality; undone exactly)",
    f"/api/v1/workbench/identity/{UUID}/undo": "undoing a merge or link (data quality)",
    "/api/v1/optouts/": "the opt-out list: read-only",
    "/api/v1/optouts/check": "checking an NHS number (POST keeps it out of URLs): read-only",
    "/api/v1/optouts/register": "registering an opt-out",
    "/api/v1/optouts/withdraw": "withdrawing an opt-out",
    "/api/v1/optouts/export.csv": "the opt-out export: read-only",
    "/api/v1/optouts/opted-in": "opt-ins: read-only",
    "/api/v1/optouts/objections": "recording an objection",
    "/api/v1/optouts/objections/check": "checking an objection (POST): read-only",
    f"/api/v1/optouts/{UUID}": "one opt-out: read-only",
    "/api/v1/audit/events": "searching the trail: writes only audit",
    "/api/v1/audit/events.csv": "exporting the trail: writes only audit",
    "/api/v1/audit/reviews": "governance findings on flagged accesses",
    "/api/v1/audit/subject-access": "a subject access report: writes only audit",
    "/api/v1/audit/fhir/AuditEvent": "the trail as FHIR: read-only",
    "/api/v1/audit/fhir/AuditEvent/1": "one audit event as FHIR: read-only",
    "/api/schema/": "the OpenAPI schema: read-only",
    "/api/docs/": "the API documentation: read-only",
    "/fhir/R4/metadata": "the CapabilityStatement: read-only",
    "/fhir/R4/.well-known/smart-configuration": "SMART discovery: read-only",
    "/fhir/R4/Patient": "Patient search: every write answers 405",
    "/fhir/R4/Patient/_search": "Patient search by POST (keeps NHS numbers out of URLs)",
    "/fhir/R4/Patient/x/$everything": "a person's whole record: every write answers 405",
    "/fhir/R4/Patient/x": "Patient read: every write answers 405",
    "/fhir/R4/x": "type search: every write answers 405",
    "/fhir/R4/x/x": "resource read: every write answers 405",
    "/fhir/R4/SubscriptionTopic": "the notification topics: read-only",
    "/fhir/R4/SubscriptionTopic/x": "one notification topic: read-only",
    "/fhir/R4/Subscription": "a partner system's subscriptions (notifications, not the record)",
    "/fhir/R4/Subscription/x": "one subscription: read-only",
    "/fhir/R4/Subscription/x/$status": "a subscription's status: read-only",
    "/fhir/R4/Subscription/x/$events": "a subscription's past notifications: writes only audit",
    "/notifications/": "the in-app notifications list: writes only audit and the last look",
    "/o/authorize/": "OAuth2 authorisation for the read API",
    "/o/token/": "OAuth2 tokens for the read API",
    "/o/revoke_token/": "OAuth2 token revocation",
    "/o/introspect/": "OAuth2 token introspection",
    "/admin/": "the admin index: read-only",
    "/admin/login/": "the admin sign-in",
    "/admin/logout/": "the admin sign-out",
    "/admin/password_change/": "an administrator's own password",
    "/admin/password_change/done/": "read-only",
    "/admin/autocomplete/": "read-only",
    "/admin/jsi18n/": "read-only",
    "/admin/r/x/x/": "the admin's view-on-site redirect: read-only",
}

# The admin's models, each with its own routes (list, add, change, delete, history,
# and the object permissions of guardian's admin): none is clinical data.
ADMIN_MODELS = {
    "/admin/auth/group/": "staff groups",
    "/admin/axes/accessattempt/": "sign-in lockouts",
    "/admin/axes/accessfailurelog/": "sign-in failures",
    "/admin/axes/accesslog/": "sign-ins",
    "/admin/ingestion/feedcredential/": "feed credentials (issue and revoke only)",
    "/admin/ingestion/feedmessage/": "feed messages (read-only)",
    "/admin/ingestion/matchqueueitem/": "parked feed items (read-only)",
    "/admin/otp_totp/totpdevice/": "staff authenticator apps (TOTP): reset a lost one",
    "/admin/oauth2_provider/accesstoken/": "OAuth2 access tokens",
    "/admin/oauth2_provider/application/": "OAuth2 client applications",
    "/admin/oauth2_provider/grant/": "OAuth2 grants",
    "/admin/oauth2_provider/idtoken/": "OAuth2 id tokens",
    "/admin/oauth2_provider/refreshtoken/": "OAuth2 refresh tokens",
    "/admin/sharedrecord/organisation/": "organisations and their data sharing agreements",
    "/admin/sharedrecord/pullsource/": "pull source configuration (issue 25), not patient data",
    "/admin/sharedrecord/user/": "staff accounts",
    "/admin/notifications/subscription/": "partner systems' subscriptions (read-only)",
    "/admin/notifications/delivery/": "notification deliveries (read-only; dead letters replayed)",
}


def test_every_record_route_refuses_every_write(client: Client, registered_gp) -> None:
    client.force_login(registered_gp)
    record_routes = [r for r in walk() if r.path.startswith("/record/")]
    assert len(record_routes) >= 3
    for route in record_routes:
        for method in ("post", "put", "patch", "delete"):
            response = getattr(client, method)(route.path)
            assert response.status_code == 405, (method, route.path, response.status_code)


def admin_model(path: str) -> str | None:
    return next((prefix for prefix in ADMIN_MODELS if path.startswith(prefix)), None)


def test_every_route_outside_the_record_is_classified() -> None:
    paths = {r.path for r in walk()}
    outside = {p for p in paths if not p.startswith("/record/")}
    unknown = sorted(p for p in outside if p not in ROUTES and admin_model(p) is None)
    assert unknown == []
    # And the other way: a route removed or renamed is taken out of the lists, so
    # the lists stay the whole truth.
    assert sorted(set(ROUTES) - paths) == []
    assert sorted(set(ADMIN_MODELS) - {admin_model(p) for p in outside}) == []
