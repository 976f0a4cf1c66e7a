"""Governance search and review forms (pages and the JSON API read the same fields)."""

from __future__ import annotations

from typing import Any

import nhs_number
from django import forms

from audit.models import AuditAction, AuditOutcome, ReviewOutcome
from audit.selectors import AuditQuery


def _nhs_number_clean(value: str) -> str:
    digits = "".join(ch for ch in value if ch not in " -")
    if digits and not (len(digits) == 10 and digits.isdigit() and nhs_number.is_valid(digits)):
        raise forms.ValidationError(
            "Enter a valid 10-digit NHS number, like 943 476 5919.", code="nhs_number"
        )
    return digits


class AuditQueryForm(forms.Form):
    nhs_number = forms.CharField(label="NHS number", required=False, max_length=14)
    user = forms.CharField(label="Username", required=False, max_length=150)
    organisation = forms.CharField(label="User's organisation (ODS code)", required=False,
                                   max_length=12)  # fmt: skip
    date_from = forms.DateField(label="From (inclusive)", required=False,
                                widget=forms.DateInput(attrs={"type": "date"}))  # fmt: skip
    date_to = forms.DateField(label="To (inclusive)", required=False,
                              widget=forms.DateInput(attrs={"type": "date"}))  # fmt: skip
    action = forms.ChoiceField(label="Action", required=False,
                               choices=[("", "Any action"), *AuditAction.choices])  # fmt: skip
    outcome = forms.ChoiceField(label="Outcome", required=False,
                                choices=[("", "Any outcome"), *AuditOutcome.choices])  # fmt: skip

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
    outcome = forms.ChoiceField(label="Finding", choices=ReviewOutcome.choices,
                                widget=forms.RadioSelect)  # fmt: skip
    note = forms.CharField(
        label="Note",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Why you reached this finding, and what happens next.",
    )
