"""Governance search and review forms (pages and the JSON API read the same fields).

Every value is parsed here into a typed one the selectors can use as it is:
digits are ASCII digits (Python's int() and strptime take any Unicode digit),
dates are YYYY-MM-DD from 0001-01-01 to 9998-12-31 (a search runs to the end
of its last day, which must exist), and no message repeats the value sent.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import nhs_number
from django import forms

from audit.models import AuditAction, AuditOutcome, ReviewOutcome
from audit.selectors import AuditQuery, Cursor

FIRST_DAY, LAST_DAY = datetime.date(1, 1, 1), datetime.date(9998, 12, 31)
ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
# What Cursor.token() writes: the event's time in UTC, then its id.
CURSOR = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?\+00:00)_([0-9]{1,19})"
)
BIGINT_MAX = 2**63 - 1


def _nhs_number_clean(value: str) -> str:
    digits = "".join(ch for ch in value if ch not in " -")
    if digits and not (re.fullmatch(r"[0-9]{10}", digits) and nhs_number.is_valid(digits)):
        raise forms.ValidationError(
            "Enter a valid 10-digit NHS number, like 943 476 5919.", code="nhs_number"
        )
    return digits


def iso_date_parse(value: str) -> datetime.date:
    """A day written YYYY-MM-DD in ASCII digits, from 0001-01-01 to 9998-12-31."""
    found = ISO_DATE.fullmatch(value.strip())
    if found is None:
        raise forms.ValidationError("Enter a date as YYYY-MM-DD, like 2024-01-31.", code="invalid")
    try:
        day = datetime.date(*(int(part) for part in found.groups()))
    except ValueError as exc:
        raise forms.ValidationError("Enter a real date.", code="invalid") from exc
    if not FIRST_DAY <= day <= LAST_DAY:
        raise forms.ValidationError(
            "Enter a date from 0001-01-01 to 9998-12-31.", code="out_of_range"
        )
    return day


def cursor_parse(value: str) -> Cursor | None:
    """The `after` of a next link (None when there is none); ValidationError if it is not one."""
    if not value:
        return None
    found = CURSOR.fullmatch(value)
    if found is None or int(found.group(2)) > BIGINT_MAX:
        raise forms.ValidationError(
            "This is not a page link this server gave out: start the search again.",
            code="invalid",
        )
    when, ident = found.groups()
    try:
        return Cursor(datetime.datetime.fromisoformat(when), int(ident))
    except ValueError as exc:
        raise forms.ValidationError(
            "This is not a page link this server gave out: start the search again.",
            code="invalid",
        ) from exc


class IsoDateField(forms.DateField):
    """A date field that takes YYYY-MM-DD only (what <input type="date"> sends), in range."""

    def to_python(self, value: Any) -> datetime.date | None:
        if value in self.empty_values:
            return None
        if isinstance(value, datetime.date):
            return value
        return iso_date_parse(str(value))


class AuditQueryForm(forms.Form):
    nhs_number = forms.CharField(label="NHS number", required=False, max_length=14)
    user = forms.CharField(label="Username", required=False, max_length=150)
    organisation = forms.CharField(label="User's organisation (ODS code)", required=False,
                                   max_length=12)  # fmt: skip
    date_from = IsoDateField(label="From (inclusive)", required=False,
                             widget=forms.DateInput(attrs={"type": "date"}))  # fmt: skip
    date_to = IsoDateField(label="To (inclusive)", required=False,
                           widget=forms.DateInput(attrs={"type": "date"}))  # fmt: skip
    # Django's own message repeats the value sent; these do not.
    action = forms.ChoiceField(
        label="Action",
        required=False,
        choices=[("", "Any action"), *AuditAction.choices],
        error_messages={"invalid_choice": "Choose an action from the list."},
    )
    outcome = forms.ChoiceField(
        label="Outcome",
        required=False,
        choices=[("", "Any outcome"), *AuditOutcome.choices],
        error_messages={"invalid_choice": "Choose an outcome from the list."},
    )

    def clean_nhs_number(self) -> str:
        return _nhs_number_clean(self.cleaned_data["nhs_number"])

    def clean_organisation(self) -> str:
        return str(self.cleaned_data["organisation"]).strip().upper()

    def clean_user(self) -> str:
        return str(self.cleaned_data["user"]).strip()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and end < start:
            raise forms.ValidationError("The end date must be on or after the start date.")
        return data

    def query(self) -> AuditQuery:
        data = self.cleaned_data
        return AuditQuery(
            nhs_number=data["nhs_number"],
            user=data["user"],
            organisation=data["organisation"],
            date_from=data["date_from"],
            date_to=data["date_to"],
            action=data["action"],
            outcome=data["outcome"],
        )


class SubjectAccessForm(forms.Form):
    nhs_number = forms.CharField(label="NHS number", max_length=14)

    def clean_nhs_number(self) -> str:
        return _nhs_number_clean(self.cleaned_data["nhs_number"])


class ReviewForm(forms.Form):
    outcome = forms.ChoiceField(
        label="Finding",
        choices=ReviewOutcome.choices,
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose a finding: justified, not justified or referred",
            "invalid_choice": "Choose a finding from the list.",
        },
    )
    note = forms.CharField(
        label="Note",
        max_length=2000,
        error_messages={
            "required": "Write a note saying why you reached this finding",
            "max_length": "Write the note in 2,000 characters or fewer",
        },
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Why you reached this finding, and what happens next.",
    )
