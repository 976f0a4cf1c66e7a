"""The residents' page: no sign-in, built from today's agreements and the access policy."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.test import Client

from sharedrecord.models import Organisation
from sharedrecord.policy import policy_table
from tests.factories import PROGRAMME_ODS, main_html, partner
from tests.sharedrecord.fidelity import words

pytestmark = pytest.mark.django_db


def test_a_resident_reads_who_takes_part_who_sees_what_and_their_choices(
    client: Client, settings: Any
) -> None:
    settings.GOVERNANCE_ODS_CODES = [PROGRAMME_ODS]
    gp, acute = partner("Z81001"), partner("ZAC01")
    ended = Organisation.objects.create(
        ods_code="ZXX01", name="Closed Clinic", kind="community",
        dsa_start=datetime.date(2020, 1, 1), dsa_end=datetime.date(2021, 1, 1),
    )  # fmt: skip
    Organisation.objects.create(
        ods_code=PROGRAMME_ODS, name="Borough Shared Care Record Programme", kind="other",
        phone="01632 960 999",
    )  # fmt: skip
    response = client.get("/about")  # nobody signed in
    assert response.status_code == 200
    page = words(main_html(response))
    assert gp.name in page
    assert acute.name in page
    assert ended.name not in page  # its agreement has ended: it no longer takes part
    # What each kind of staff can see comes from the access policy as configured.
    sees = policy_table().sections_for("social-worker", "social-care")
    assert "allergies" in sees
    assert "results" not in sees
    table = re.search(r'id="resident-role-table">.*?</table>', main_html(response), re.S)
    assert table is not None
    row = re.search(r"Social worker</th>.*?</tr>", table.group(0), re.S)
    assert row is not None
    social = words(row.group(0))
    assert "Allergies and adverse reactions" in social
    assert "Test results" not in social
    assert "Tell your GP practice" in page
    assert "Borough Shared Care Record Programme on 01632 960 999" in page
    assert "who has looked at your shared care record" in page


def test_the_residents_page_is_linked_from_every_page(client: Client) -> None:
    assert 'href="/about"' in client.get("/accounts/login/").content.decode()
