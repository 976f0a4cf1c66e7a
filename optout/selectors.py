"""Reads of the opt-out registry. The gate that ingestion asks lives here."""

from __future__ import annotations


def optout_blocks(*, nhs_number: str) -> bool:
    """True when this NHS number has an active opt-out, so nothing may be stored for it.

    Call it inside the upsert transaction after taking the person's lock
    (sharedrecord.services.patient_lock), so a concurrent opt-out always wins.
    The registry itself arrives with the opt-out issue; until then nobody is
    opted out, and every write path already asks here.
    """
    return False
