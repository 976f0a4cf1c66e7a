"""Events derived from what the write path stored, in its transaction (never from raw messages).

entries_upsert hands over what it created or changed; this module names the
facts among them and writes each once, with the entries, in one statement
(INSERT ... ON CONFLICT DO NOTHING on the person and fact): a re-sent message
changes nothing, so derives nothing, and a new version of the same fact (an
admission's next update) finds the fact already written. Nothing is derived
for an opted-out person because nothing is stored for them (the gate runs
first, under the same lock), and a person's events go with them when they
opt out (CASCADE).

The facts, one rule each:
1. Admission: an inpatient Encounter (class IMP, ACUTE, NONAC) that is
   arrived or in progress (HL7 v2 A01, or A04/A08 with PV1-2 "I").
2. Discharge: an inpatient Encounter that is finished (A03).
3. A&E attendance: an emergency Encounter (class EMER) not cancelled or
   planned (A04, or A01 with PV1-2 "E").
4. Death: a Patient resource with deceasedBoolean true or a deceasedDateTime,
   once per person whoever says it.
5. New result: a DiagnosticReport that is final, amended or corrected;
   abnormal when any Observation it names (or, if it names none the batch
   holds, any in the same batch) carries an abnormal interpretation.
6. New document: a DocumentReference that is current.
7. New or changed care plan (CarePlan) or alert (Flag): every new content
   (the fact includes the content hash), unless entered in error.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from sharedrecord.entrydata import EntryData
from sharedrecord.notifications.models import EventKind

logger = logging.getLogger(__name__)

INPATIENT_CLASSES = frozenset({"IMP", "ACUTE", "NONAC"})
EMERGENCY_CLASSES = frozenset({"EMER"})
OPEN_STATUSES = frozenset({"arrived", "in-progress", "onleave", "triaged"})
NOT_HAPPENED = frozenset({"planned", "cancelled", "entered-in-error"})
RESULT_STATUSES = frozenset({"final", "amended", "corrected", "appended"})
ABNORMAL = frozenset({"H", "HH", "HU", "L", "LL", "LU", "A", "AA", "POS", "DET", "<", ">"})


@dataclass(frozen=True)
class DerivedEvent:
    kind: EventKind
    fact: str
    resource_type: str
    source_id: str
    occurred_at: datetime.datetime | None
    abnormal: bool = False


def _encounter_class(resource: dict[str, Any]) -> str:
    klass = resource.get("class")
    if isinstance(klass, dict):
        return str(klass.get("code", "")).upper()
    return ""


def _abnormal(resource: dict[str, Any]) -> bool:
    for concept in resource.get("interpretation", []) or []:
        if not isinstance(concept, dict):
            continue
        for coding in concept.get("coding", []) or []:
            if isinstance(coding, dict) and str(coding.get("code", "")).upper() in ABNORMAL:
                return True
    return False


def _report_abnormal(report: EntryData, abnormal_ids: set[str], all_ids: set[str]) -> bool:
    named = set()
    for ref in report.resource.get("result", []) or []:
        if isinstance(ref, dict):
            named.add(str(ref.get("reference", "")).rsplit("/", 1)[-1].removeprefix("urn:uuid:"))
    known = named & all_ids
    if known:
        return bool(known & abnormal_ids)
    return bool(abnormal_ids)


def events_derive(
    items: Sequence[EntryData], batch: Sequence[EntryData] = ()
) -> list[DerivedEvent]:
    """The facts among entries just created or changed (the rules in this module's docstring).

    Pure: reads only its arguments. `items` are the entries of one source for
    one person that were created or changed; `batch` is everything that
    source sent for the person with them (where a report's results are).
    """
    observations = [i for i in (batch or items) if i.resource_type == "Observation"]
    abnormal_ids = {o.source_id for o in observations if _abnormal(o.resource)}
    all_ids = {o.source_id for o in observations}
    found: list[DerivedEvent] = []
    for item in items:
        key = f"{item.resource_type}/{item.source_id}"
        when = item.effective_at or item.source_updated_at
        kind_of = item.resource_type
        if kind_of == "Encounter":
            klass, status = _encounter_class(item.resource), item.status
            if klass in INPATIENT_CLASSES and status in OPEN_STATUSES:
                found.append(DerivedEvent(EventKind.ADMISSION, f"{key}#admission", kind_of,
                                          item.source_id, when))  # fmt: skip
            elif klass in INPATIENT_CLASSES and status == "finished":
                ended = item.resource.get("period", {}).get("end") if isinstance(
                    item.resource.get("period"), dict) else None  # fmt: skip
                found.append(DerivedEvent(EventKind.DISCHARGE, f"{key}#discharge", kind_of,
                                          item.source_id, _when(ended) or when))  # fmt: skip
            elif klass in EMERGENCY_CLASSES and status not in NOT_HAPPENED:
                found.append(DerivedEvent(EventKind.AE_ATTENDANCE, f"{key}#ae", kind_of,
                                          item.source_id, when))  # fmt: skip
        elif kind_of == "Patient":
            deceased = item.resource.get("deceasedBoolean") is True or bool(
                item.resource.get("deceasedDateTime")
            )
            if deceased:
                died = _when(item.resource.get("deceasedDateTime"))
                found.append(DerivedEvent(EventKind.DEATH, "death", kind_of, item.source_id, died))
        elif kind_of == "DiagnosticReport" and item.status in RESULT_STATUSES:
            abnormal = _report_abnormal(item, abnormal_ids, all_ids)
            found.append(DerivedEvent(EventKind.RESULT, f"{key}#result", kind_of,
                                      item.source_id, when, abnormal))  # fmt: skip
        elif kind_of == "DocumentReference" and item.status in ("current", ""):
            found.append(DerivedEvent(EventKind.DOCUMENT, f"{key}#document", kind_of,
                                      item.source_id, when))  # fmt: skip
        elif kind_of in ("CarePlan", "Flag") and item.status != "entered-in-error":
            kind = EventKind.CARE_PLAN if kind_of == "CarePlan" else EventKind.ALERT
            found.append(DerivedEvent(kind, f"{key}#{item.content_hash[:16]}", kind_of,
                                      item.source_id, when))  # fmt: skip
    return found


def _when(value: object) -> datetime.datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


_INSERT = (
    "INSERT INTO notifications_event (public_id, patient_id, kind, fact, source_org_id, "
    "resource_type, source_id, abnormal, occurred_at, recorded_at) "
    "SELECT gen_random_uuid(), %s, k, f, %s, t, s, a, o, %s "
    "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bool[], "
    "%s::timestamptz[]) AS e(k, f, t, s, a, o) "
    "ON CONFLICT (patient_id, fact) DO NOTHING"
)


def events_write(
    cursor: CursorWrapper,
    *,
    patient_id: int,
    source_org_id: int,
    events: list[DerivedEvent],
    now: datetime.datetime,
) -> None:
    """Write the events in one statement (each fact once), and dispatch them after commit.

    The caller holds the person's lock and the transaction (entries_upsert).
    A fact older than NOTIFY_RECENT_DAYS when stored (an onboarding's
    history, a late correction of an old encounter) is not news: no event.
    """
    since = now - datetime.timedelta(days=settings.NOTIFY_RECENT_DAYS)
    events = [e for e in events if e.occurred_at is None or e.occurred_at >= since]
    if not events:
        return
    cursor.execute(
        _INSERT,
        [
            patient_id,
            source_org_id,
            now,
            [str(e.kind) for e in events],
            [e.fact for e in events],
            [e.resource_type for e in events],
            [e.source_id for e in events],
            [e.abnormal for e in events],
            [e.occurred_at for e in events],
        ],
    )
    if cursor.rowcount and not _dispatch_queued():
        transaction.on_commit(dispatch_after_commit)


def _dispatch_queued() -> bool:
    # Django keeps (savepoint ids, callback, robust) per registered callback.
    return any(item[1] is dispatch_after_commit for item in connection.run_on_commit)


def dispatch_after_commit() -> None:
    """Queue the fan-out; if the broker is down, the periodic sweep finds the events instead."""
    from sharedrecord.notifications.tasks import notification_events_dispatch_task

    try:
        notification_events_dispatch_task.apply_async(retry=False)
    except Exception:  # the sweep dispatches what is waiting; the ingest must not fail for it
        logger.warning("notification dispatch not queued; the sweep will send it")
