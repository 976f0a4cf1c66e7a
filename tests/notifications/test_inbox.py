"""The in-app list: who sees what changed, withheld items, filters, and the audit of each view."""

from __future__ import annotations

import re

import pytest

from audit.models import AuditEvent
from sharedrecord.notifications.dispatch import notification_events_dispatch
from sharedrecord.notifications.models import Notice
from tests.factories import (
    client_for,
    feed,
    main_html,
    make_credential,
    make_staff,
    next_nhs_number,
    partner,
)
from tests.notifications.feeds import builder, every_kind_bundle

pytestmark = pytest.mark.django_db


def listed(response: object) -> str:
    """The list itself (not the filter's options), or what the page says instead."""
    html = main_html(response)
    found = re.search(r'<table class="nhsuk-table" id="notifications">.*?</table>', html, re.S)
    return found.group(0) if found else html.split("</form>", 1)[-1]


@pytest.fixture
def person() -> str:
    number = next_nhs_number()
    feed(make_credential(partner("Z81001"))[0], builder(number, "Z81001", "g1").bundle())
    feed(make_credential(partner("ZCM01"))[0], builder(number, "ZCM01", "c1").add(
        "CarePlan", {"status": "active", "intent": "plan", "period": {"start": "2020-01-01"}}
    ).bundle())  # fmt: skip
    feed(
        make_credential(partner("ZAC01"))[0],
        every_kind_bundle(number, "ZAC01", sensitive_flag=True),
    )
    notification_events_dispatch()
    return number


def test_the_registered_practice_sees_every_change_with_a_link_to_the_record(
    person: str, registered_gp: object
) -> None:
    page = client_for(registered_gp).get("/notifications/")  # type: ignore[arg-type]
    assert page.status_code == 200
    html = listed(page)
    for label in (
        "Admitted to hospital",
        "Attended A&amp;E",
        "New result",
        "New document",
        "New or changed care plan",
        "New or changed alert",
        "Abnormal",
    ):
        assert label in html, label
    assert "/access/" in html
    assert "New restricted item" not in html  # a GP with the registration sees it
    event = AuditEvent.objects.filter(action="notifications-view").latest("id")
    assert event.detail["items"] == 6


def test_a_community_nurse_sees_the_restricted_alert_only_as_a_restricted_item(
    person: str,
) -> None:
    nurse = make_staff("ZCM01", "community", "nurse")
    html = listed(client_for(nurse).get("/notifications/"))
    assert "New restricted item" in html
    assert "Risk of falls" not in html
    assert "New or changed alert" not in html


def test_a_social_worker_is_not_told_of_results(person: str) -> None:
    feed(make_credential(partner("ZSC01"))[0], builder(person, "ZSC01", "s1").add(
        "CarePlan", {"status": "active", "intent": "plan", "period": {"start": "2020-01-01"}}
    ).bundle())  # fmt: skip
    Notice.objects.all().delete()
    from sharedrecord.notifications.models import Event

    Event.objects.update(dispatched_at=None)
    notification_events_dispatch()
    worker = make_staff("ZSC01", "social-care", "social-worker")
    html = listed(client_for(worker).get("/notifications/?kind=result"))
    assert "New result" not in html
    assert "Nothing to show" in html


def test_an_organisation_without_a_relationship_is_told_nothing(
    person: str, unrelated_clinician: object
) -> None:
    html = listed(client_for(unrelated_clinician).get("/notifications/"))  # type: ignore[arg-type]
    assert "Nothing to show" in html


def test_the_list_filters_by_kind_and_by_what_is_new(person: str, registered_gp: object) -> None:
    client = client_for(registered_gp)  # type: ignore[arg-type]
    html = listed(client.get("/notifications/?kind=admission"))
    assert "Admitted to hospital" in html
    assert "New document" not in html
    assert "Nothing to show since you last looked" in listed(client.get("/notifications/?new=1"))


def test_staff_without_a_clinical_role_are_refused(person: str) -> None:
    officer = make_staff("Z81001", "gp-practice", "privacy-officer")
    assert client_for(officer).get("/notifications/").status_code == 403


def test_the_list_costs_the_same_queries_however_many_changes_a_person_has(
    person: str, registered_gp: object
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_for(registered_gp)  # type: ignore[arg-type]
    client.get("/notifications/")  # the session and the last look exist from here on

    def cost() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/notifications/").status_code == 200
        return len(queries)

    before = cost()
    feed(make_credential(partner("ZAC01"))[0], every_kind_bundle(person, "ZAC01", key="more"))
    notification_events_dispatch()
    assert cost() == before
