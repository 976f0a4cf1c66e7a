"""Every page that shows personal data writes an audit event (STYLE.md sections 3 and 4).

The walker classifies every page route (everything outside the APIs; the FHIR
read API has its own walk in tests/sharedrecord/test_fhir_api.py) as showing
personal data or not. A new page route fails until it is classified here; each route
that shows personal data is opened with real data and must write at least one
audit event about that person.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditEvent
from ingestion.models import MatchQueueItem
from sharedrecord.models import Entry, Patient, RecordSection, User
from tests.factories import (
    PROGRAMME_ODS,
    client_for,
    confirm_basis,
    feed,
    grant_optout_management,
    make_credential,
    make_officer,
    make_optout,
    make_staff,
    next_nhs_number,
    partner,
    small_bundle,
)
from tests.urlwalk import walk

pytestmark = pytest.mark.django_db

UUID = "00000000-0000-0000-0000-000000000001"  # tests/urlwalk.py's placeholder
API_PREFIXES = ("/api/", "/fhir/R4/", "/o/")

# Page routes that show no personal data, and why. Admin routes are listed by model below.
NO_PERSONAL_DATA = {
    "/": "the home page: links and counts of unreviewed accesses, no person",
    "/search": "POST only; its results are the audited search (PATIENT_SEARCH)",
    "/accounts/login/": "the sign-in form",
    "/accounts/logout/": "signing out",
    "/accounts/session": "the session's remaining time",
    "/accounts/code": "the one-time code after a password (no personal data)",
    "/smart/launch": "SMART EHR launch: refuses unregistered EHRs (audited); no personal data",
    "/smart/callback": "SMART EHR launch: its search and record views are audited (test_smart_launch.py)",
    "/launch": "signed launch: POST only; its search and record views are audited (test_launch.py)",
    "/accounts/oidc/start": "single sign-on: sends the browser to the provider",
    "/accounts/oidc/callback": "single sign-on: the provider's answer (audited sign-in)",
    "/accounts/oidc/role": "single sign-on: the user's own role profiles",
    "/accounts/timed-out": "the idle sign-out (POST only)",
    "/help/roles": "the roles table",
    "/about": "the residents' page: organisations taking part and the access policy",
    "/optouts/record": "the empty form on GET; the confirm step is an audited POST",
    "/optouts/objections/": "the empty form on GET; the confirm step is an audited POST",
    "/governance/": "the governance home: search forms and counts, no person",
    "/workbench/": "the data quality workbench: counts and cases by sender and reason, no person",
    "/healthz": "liveness",
    "/readyz": "readiness",
    "/metrics": "counts by organisation, kind, queue and view: no person",
    "/operations/feeds": "feed health: systems, times, counts and reason codes, no person",
    f"/operations/feeds/replay/{UUID}": "POST only: replays a failed message (audited)",
    "/admin/": "the admin index",
    "/admin/login/": "the admin sign-in form",
    "/admin/logout/": "signing out",
    "/admin/password_change/": "an administrator's own password",
    "/admin/password_change/done/": "a confirmation",
    "/admin/autocomplete/": "lookups on the admin's own models",
    "/admin/jsi18n/": "translations",
    "/admin/r/x/x/": "a redirect",
}
ADMIN_MODELS_WITHOUT_PERSONAL_DATA = {
    "/admin/auth/group/": "staff groups",
    "/admin/axes/accessattempt/": "sign-in lockouts (staff usernames, no person)",
    "/admin/axes/accessfailurelog/": "sign-in failures (staff usernames, no person)",
    "/admin/axes/accesslog/": "sign-ins (staff usernames, no person)",
    "/admin/ingestion/feedcredential/": "feed credentials",
    "/admin/ingestion/feedmessage/": "ids, counts and failed stages; the payload is excluded",
    "/admin/otp_totp/totpdevice/": "staff authenticator apps (staff usernames, no person)",
    "/admin/oauth2_provider/accesstoken/": "OAuth2 tokens",
    "/admin/oauth2_provider/application/": "OAuth2 client applications",
    "/admin/oauth2_provider/grant/": "OAuth2 grants",
    "/admin/oauth2_provider/idtoken/": "OAuth2 id tokens",
    "/admin/oauth2_provider/refreshtoken/": "OAuth2 refresh tokens",
    "/admin/sharedrecord/organisation/": "organisations",
    "/admin/sharedrecord/pullsource/": "pull sources: endpoints and the names of secrets",
    "/admin/sharedrecord/user/": "staff accounts",
    "/admin/notifications/subscription/": "partner systems' subscriptions (secret excluded)",
    "/admin/notifications/delivery/": "delivery states and event numbers; the person excluded",
}
# The parked items' list shows no personal data; every other route of it does.
MATCH_QUEUE_LIST = "/admin/ingestion/matchqueueitem/"


@dataclass
class Scene:
    """A fed person a GP has a basis for, an opt-out, a parked item, and who may see each."""

    record: Patient
    gp: Client
    practice: Client
    officer: Client
    data_quality: Client
    admin: Client
    optout: str
    optout_number: str
    parked: MatchQueueItem
    document: str
    event: int


@pytest.fixture
def scene(record: Patient, registered_gp: User, settings: Any, django_user_model: Any) -> Scene:
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME_ODS]
    gp = client_for(registered_gp)
    assert confirm_basis(gp, record).status_code == 302
    grant_optout_management(registered_gp)
    number = next_nhs_number()
    assert registered_gp.organisation is not None
    optout = make_optout(number, registered_gp.organisation)
    credential, _ = make_credential(partner("ZAC01"))
    parked_number = next_nhs_number()
    feed(credential, small_bundle(parked_number))
    conflicting = small_bundle(parked_number, key="conflict")
    conflicting["entry"][0]["resource"]["birthDate"] = "1990-01-01"
    feed(credential, conflicting)
    parked = MatchQueueItem.objects.filter(nhs_number_sent=parked_number).order_by("id")[0]
    document = Entry.objects.get(patient=record, resource_type="DocumentReference")
    root = django_user_model.objects.create_superuser("walker.root", password="x" * 20)
    event = AuditEvent.objects.filter(patient_id=record.public_id).order_by("-id")[0]
    return Scene(
        record=record, gp=gp, practice=gp, officer=client_for(make_officer()),
        data_quality=client_for(make_staff(PROGRAMME_ODS, "other", "data-quality-officer")),
        admin=client_for(root), optout=str(optout.public_id), optout_number=number,
        parked=parked, document=str(document.public_id), event=event.id,
    )  # fmt: skip


# What each page that shows personal data is opened with: (who, URL, whose NHS number).
Visit = tuple[Client, str, str]


def _record(s: Scene) -> list[Visit]:
    return [(s.gp, f"/record/{s.record.public_id}/", s.record.nhs_number)]


def _sections(s: Scene) -> list[Visit]:
    return [
        (s.gp, f"/record/{s.record.public_id}/{section}", s.record.nhs_number)
        for section in RecordSection.values
    ]


def _governance(path: str) -> Callable[[Scene], list[Visit]]:
    def visits(s: Scene) -> list[Visit]:
        return [(s.officer, f"{path}?nhs_number={s.record.nhs_number}", s.record.nhs_number)]

    return visits


PERSONAL: dict[str, Callable[[Scene], list[Visit]]] = {
    f"/access/{UUID}/": lambda s: [(s.gp, f"/access/{s.record.public_id}/", s.record.nhs_number)],
    f"/access/{UUID}/emergency": lambda s: [
        (s.gp, f"/access/{s.record.public_id}/emergency", s.record.nhs_number)
    ],
    f"/record/{UUID}/": _record,
    f"/record/{UUID}/x": _sections,
    f"/record/{UUID}/timeline": lambda s: [
        (s.gp, f"/record/{s.record.public_id}/timeline", s.record.nhs_number)
    ],
    f"/record/{UUID}/documents/{UUID}": lambda s: [
        (s.gp, f"/record/{s.record.public_id}/documents/{s.document}", s.record.nhs_number)
    ],
    "/optouts/": lambda s: [(s.practice, "/optouts/", "")],
    f"/optouts/{UUID}": lambda s: [(s.practice, f"/optouts/{s.optout}", s.optout_number)],
    f"/optouts/{UUID}/opt-in": lambda s: [
        (s.practice, f"/optouts/{s.optout}/opt-in", s.optout_number)
    ],
    "/notifications/": lambda s: [(s.gp, "/notifications/", "")],
    "/governance/events": _governance("/governance/events"),
    "/governance/events.csv": _governance("/governance/events.csv"),
    "/governance/subject-access": _governance("/governance/subject-access"),
    "/governance/events/1": lambda s: [(s.officer, f"/governance/events/{s.event}", "")],
    "/governance/reviews": lambda s: [(s.officer, "/governance/reviews", "")],
    "/workbench/identity": lambda s: [(s.data_quality, "/workbench/identity", "")],
    "/workbench/disputes": lambda s: [(s.data_quality, "/workbench/disputes", "")],
    f"/workbench/{UUID}": lambda s: [
        (s.data_quality, f"/workbench/{s.parked.group}", s.parked.nhs_number_sent)
    ],
    "/admin/ingestion/matchqueueitem/x/change/": lambda s: [
        (s.admin, f"/admin/ingestion/matchqueueitem/{s.parked.pk}/change/", "")
    ],
}
# A parked item's other routes: the read-only admin refuses add and delete, the bare id
# redirects to the (audited) change view, and the history names only the item's type
# and reason. Each is checked to show nothing of the person.
MATCH_QUEUE_REFUSED = {
    "/admin/ingestion/matchqueueitem/add/",
    "/admin/ingestion/matchqueueitem/x/history/",
    "/admin/ingestion/matchqueueitem/x/delete/",
    "/admin/ingestion/matchqueueitem/x/",
}


def page_routes() -> set[str]:
    return {r.path for r in walk() if not r.path.startswith(API_PREFIXES)}


def classified(path: str) -> bool:
    return (
        path in NO_PERSONAL_DATA
        or path in PERSONAL
        or path in MATCH_QUEUE_REFUSED
        or path == MATCH_QUEUE_LIST
        or any(path.startswith(prefix) for prefix in ADMIN_MODELS_WITHOUT_PERSONAL_DATA)
    )


def test_every_page_route_is_classified() -> None:
    routes = page_routes()
    assert sorted(p for p in routes if not classified(p)) == []
    listed = set(NO_PERSONAL_DATA) | set(PERSONAL) | MATCH_QUEUE_REFUSED | {MATCH_QUEUE_LIST}
    assert sorted(listed - routes) == []  # a removed route leaves the lists too


def test_every_page_that_shows_personal_data_writes_an_audit_event(scene: Scene) -> None:
    silent = []
    for route, visits in PERSONAL.items():
        for client, url, nhs_number in visits(scene):
            before = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
            response = client.get(url)
            if response.streaming:
                b"".join(response.streaming_content)  # type: ignore[attr-defined]
            assert response.status_code == 200, (route, url, response.status_code)
            written = AuditEvent.objects.filter(id__gt=before)
            if nhs_number:
                written = written.filter(nhs_number=nhs_number)
            if not written.exists():
                silent.append(url)
    assert silent == []


def test_the_parked_items_other_admin_routes_show_nothing(scene: Scene) -> None:
    number = scene.parked.nhs_number_sent
    for route in MATCH_QUEUE_REFUSED:
        url = route.replace("/x/", f"/{scene.parked.pk}/")
        response = scene.admin.get(url)
        assert response.status_code in (200, 302, 403), (url, response.status_code)
        assert number not in response.content.decode(), url
        if response.status_code == 302:
            assert re.search(rf"/{scene.parked.pk}/change/$", response["Location"]), url
