"""Who and which organisation an event names, in words: the directory the pages read.

The trail keeps usernames, ODS codes and role codes as they were at the event
(they are evidence and never change). Officers read names: the app that owns
users and organisations registers a directory at start-up (audit imports none
of our apps), and a page asks it once for all the events it shows, never per
event. Without one, or for someone no longer known, the code itself is shown.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from audit.models import AuditEvent


@dataclass(frozen=True)
class Names:
    """Names for the usernames, ODS codes and role codes a page shows."""

    people: dict[str, str] = field(default_factory=dict)
    organisations: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)

    def person(self, username: str) -> str:
        return self.people.get(username) or username

    def organisation(self, ods_code: str) -> str:
        return self.organisations.get(ods_code) or ods_code

    def role(self, code: str) -> str:
        return self.roles.get(code) or code


Directory = Callable[[set[str], set[str]], Names]
_directory: list[Directory] = []


def directory_register(directory: Directory) -> None:
    """Say how usernames and ODS codes read as names (registered at start-up)."""
    _directory[:] = [directory]


def names_for(
    events: Iterable[AuditEvent],
    *,
    extra_ods: Iterable[str] = (),
    extra_usernames: Iterable[str] = (),
) -> Names:
    """Names for everyone and every organisation these events name: one look-up for all.

    `extra_ods` and `extra_usernames` add what the page shows beside the events
    (the scope's organisation, a finding's reviewer, the report's maker).
    """
    listed = list(events)
    usernames = {e.actor_name for e in listed if e.actor_name} | {u for u in extra_usernames if u}
    ods = {e.actor_org_ods for e in listed if e.actor_org_ods} | {
        code for e in listed for code in (e.source_ods or [])
    }
    ods |= {code for code in extra_ods if code}
    if not _directory or not (usernames or ods):
        return Names()
    return _directory[0](usernames, ods)


@dataclass(frozen=True)
class Subject:
    """The person a subject access report is about, as the record shows them now."""

    name: str
    birth_date: datetime.date | None


SubjectLookup = Callable[[str], Subject | None]
_subjects: list[SubjectLookup] = []


def subject_lookup_register(lookup: SubjectLookup) -> None:
    """Say how an NHS number reads as the person's name and date of birth (at start-up)."""
    _subjects[:] = [lookup]


def subject_of(nhs_number: str) -> Subject | None:
    """The person's name and date of birth, or None when no record is held for the number."""
    return _subjects[0](nhs_number) if _subjects else None
