"""Who may see which patient: the one module that decides (STYLE.md section 3).

This first version covers finding a person. The record pages (role x
organisation-kind sections, sensitivity, relationships, break-glass) extend
it here, never elsewhere.
"""

from __future__ import annotations

from django.db.models import QuerySet

from sharedrecord.exceptions import PatientNotFound
from sharedrecord.models import CLINICAL_ROLES, Patient, User


def viewer_may_search(viewer: User) -> bool:
    """Staff in a clinical or care role, of an organisation whose agreement is active."""
    organisation = viewer.organisation
    return (
        viewer.is_active
        and viewer.role in CLINICAL_ROLES
        and organisation is not None
        and organisation.agreement_active()
    )


def patients_visible_to(viewer: User) -> QuerySet[Patient]:
    """Every person this viewer may find. Opted-out people have no record, so never appear."""
    if not viewer_may_search(viewer):
        return Patient.objects.none()
    return Patient.objects.all()


def patient_get_for_viewer(*, viewer: User, patient_id: str) -> Patient:
    """One person by public id; "does not exist" and "not yours" are the same answer."""
    patient = patients_visible_to(viewer).filter(public_id=patient_id).first()
    if patient is None:
        raise PatientNotFound("No shared care record is available for this person.")
    return patient
