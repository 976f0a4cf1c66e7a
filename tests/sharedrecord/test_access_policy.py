"""The access policy table is configuration: checked when read, and it changes the pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from sharedrecord.policy import policy_table, policy_table_load
from sharedrecord.presenting import html_sanitise

pytestmark = pytest.mark.django_db


def _table(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def test_the_shipped_table_gives_social_workers_no_results_or_documents() -> None:
    sections = policy_table().sections_for("social-worker", "social-care")
    assert {"care-plans", "contacts", "alerts", "demographics"} <= sections
    assert not {"results", "documents"} & sections


def test_the_first_matching_row_wins() -> None:
    table = policy_table()
    assert "documents" not in table.sections_for("nurse", "social-care")
    assert "documents" in table.sections_for("nurse", "acute")


def test_a_role_the_table_does_not_name_sees_nothing() -> None:
    assert policy_table().sections_for("admin-clerk", "gp-practice") == frozenset()


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (
            '[[visibility]]\nrole = "receptionist"\norganisation_kind = "*"\nsections = "all"',
            "reads no records",
        ),
        (
            '[[visibility]]\nrole = "gp"\norganisation_kind = "spaceship"\nsections = "all"',
            "unknown kind",
        ),
        ('[[visibility]]\nrole = "gp"\norganisation_kind = "*"\nsections = ["x-rays"]', "unknown"),
        ('[sensitivity]\nrestricted_roles = ["dentist"]', "unknown"),
        ("[[visibility]\n", "cannot be read"),
    ],
)
def test_a_mistake_in_the_table_stops_the_process(
    tmp_path: Path, text: str, complaint: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=complaint):
        policy_table_load(_table(tmp_path, text))


def test_a_deployment_can_narrow_what_a_role_sees(
    client, registered_gp, settings, tmp_path
) -> None:
    from tests.factories import confirm_basis, fed_person, main_html, signed_in

    settings.ACCESS_POLICY_FILE = _table(
        tmp_path,
        '[[visibility]]\nrole = "gp"\norganisation_kind = "*"\n'
        'sections = ["allergies", "medications"]\n',
    )
    person = fed_person("narrow")
    signed_in(client, registered_gp)
    confirm_basis(client, person)
    page = main_html(client.get(f"/record/{person.public_id}/"))
    assert "Allergy to penicillin" in page
    assert "Type 2 diabetes" not in page
    assert client.get(f"/record/{person.public_id}/problems").status_code == 403


def test_partner_html_is_sanitised_before_it_is_shown() -> None:
    dirty = (
        '<p onclick="steal()">Discharged <b>home</b></p><script>alert(1)</script>'
        '<a href="https://evil.example/">link</a><img src=x onerror=alert(1)><iframe></iframe>'
    )
    clean = html_sanitise(dirty)
    assert clean == "<p>Discharged <b>home</b></p>link"
