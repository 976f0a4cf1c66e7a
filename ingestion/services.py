"""Feed ingestion: credentials, receiving a message, processing it, sweeping stuck ones."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from lxml import etree

from audit.models import AuditAction, AuditOutcome
from audit.services import AuditActor, AuditSubject, audit_event_record
from ingestion import hl7v2
from ingestion.fhir import (
    FHIR_NS,
    NHS_NUMBER_SYSTEM,
    EntryIssue,
    FeedRejected,
    ParsedBundle,
    ParsedEntry,
    parse_bundle,
)
from ingestion.models import (
    FeedCredential,
    FeedMessage,
    MatchQueueItem,
    MessageKind,
    MessageStatus,
    ParkReason,
)
from optout.models import OptOutRoute
from optout.selectors import optout_blocks
from optout.services import optout_holding_move, optout_register
from sharedrecord.exceptions import PermissionDenied
from sharedrecord.matching import (
    Demographics,
    MatchOutcome,
    nhs_number_is_valid,
    nhs_number_normalise,
    patient_match,
)
from sharedrecord.models import Organisation, OrganisationKind, SourceKey
from sharedrecord.services import (
    EntryData,
    UpsertResult,
    entries_upsert,
    entry_remove,
    organisation_feed_seen,
    patient_create,
    patient_demographics_refresh,
    patient_entries_merge,
    patient_lock,
    registered_gp_named,
)

logger = logging.getLogger(__name__)
INGESTION = "ingestion"
TOKEN_PREFIX = "sr"  # noqa: S105 - a label on tokens, not a secret

# ---------------------------------------------------------------- credentials


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def feed_credential_issue(
    *, organisation: Organisation, system: str, actor: AuditActor | None = None
) -> tuple[FeedCredential, str]:
    """Make a new credential for a partner system; return it and the token (shown once).

    Only the token's SHA-256 is stored. Side effects: one audit event naming `actor`
    (the member of staff, or the command line when None).
    """
    prefix = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    credential = FeedCredential(
        organisation=organisation, system=system, prefix=prefix, token_hash=_token_hash(token)
    )
    credential.full_clean()
    credential.save()
    _audit_credential_change(credential, "issued", actor)
    return credential, token


def _audit_credential_change(
    credential: FeedCredential, change: str, actor: AuditActor | None
) -> None:
    audit_event_record(
        action=AuditAction.ADMIN_CHANGE,
        actor=actor or AuditActor.system("manage.py"),
        detail={
            "model": "ingestion.FeedCredential",
            "object": str(credential.public_id),
            "change": change,
        },
        source_ods=[credential.organisation.ods_code],
    )


@transaction.atomic
def feed_credential_revoke(
    *, credential: FeedCredential, actor: AuditActor | None = None
) -> FeedCredential:
    """Stop a credential working from now on (idempotent). Side effects: one audit event."""
    if credential.revoked_at is None:
        credential.revoked_at = timezone.now()
        credential.save(update_fields=["revoked_at"])
        _audit_credential_change(credential, "revoked", actor)
    return credential


def feed_credential_authenticate(*, token: str) -> FeedCredential | None:
    """The live credential this token belongs to, or None (unknown, wrong or revoked)."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    credential = (
        FeedCredential.objects.select_related("organisation").filter(prefix=parts[1]).first()
    )
    if credential is None or credential.revoked_at is not None:
        return None
    if not hmac.compare_digest(credential.token_hash, _token_hash(token)):
        return None
    FeedCredential.objects.filter(pk=credential.pk).update(last_used_at=timezone.now())
    return credential


# ---------------------------------------------------------------- receiving


def feed_actor(credential: FeedCredential) -> AuditActor:
    return AuditActor.system(
        credential.system, org_ods=credential.organisation.ods_code, id=credential.public_id
    )


@dataclass(frozen=True)
class Received:
    message: FeedMessage
    duplicate: bool


class IdempotencyConflict(Exception):
    """The same idempotency key arrived with different content."""


def feed_message_receive(
    *,
    credential: FeedCredential,
    kind: MessageKind,
    payload: bytes,
    idempotency_key: str,
    entry_count: int,
) -> Received:
    """Store an inbound message durably and queue it; a redelivery returns the first receipt.

    The row commits before this returns, so an accepted message is never lost;
    processing is queued only once the commit succeeds.
    Side effects: one FeedMessage, one audit event, one Celery task on commit.
    """
    digest = hashlib.sha256(payload).hexdigest()
    key = (idempotency_key or f"sha256:{digest}")[:200]
    organisation = credential.organisation
    existing = FeedMessage.objects.filter(organisation=organisation, idempotency_key=key).first()
    if existing is None:
        try:
            with transaction.atomic():
                message = FeedMessage.objects.create(
                    organisation=organisation,
                    credential=credential,
                    kind=kind,
                    idempotency_key=key,
                    payload=payload,
                    payload_sha256=digest,
                    payload_bytes=len(payload),
                    entry_count=entry_count,
                )
                audit_event_record(
                    action=AuditAction.FEED_RECEIVED,
                    actor=feed_actor(credential),
                    detail={
                        "message": str(message.public_id),
                        "kind": kind,
                        "entries": entry_count,
                    },
                    source_ods=[organisation.ods_code],
                )
                transaction.on_commit(lambda: _enqueue(message.pk))
            return Received(message, duplicate=False)
        except IntegrityError:
            # A concurrent delivery of the same message won the insert.
            existing = FeedMessage.objects.get(organisation=organisation, idempotency_key=key)
    if existing.payload_sha256 != digest:
        raise IdempotencyConflict
    return Received(existing, duplicate=True)


def _enqueue(message_pk: int) -> None:
    from ingestion.tasks import feed_message_process_task

    feed_message_process_task.delay(message_pk)


# ---------------------------------------------------------------- processing


@dataclass
class _Outcome:
    counts: Counter[str] = field(default_factory=Counter)
    issues: list[dict[str, Any]] = field(default_factory=list)

    def issue(self, issue: EntryIssue) -> None:
        self.issues.append(
            {
                "entry": issue.index,
                "severity": issue.severity,
                "code": issue.code,
                "diagnostics": issue.message,
                "expression": list(issue.paths),
            }
        )
        if issue.severity == "error":
            self.counts["rejected"] += 1


def _media(kind: str) -> Literal["json", "xml"]:
    return "xml" if kind == MessageKind.FHIR_XML else "json"


# ---------------------------------------------------------------- HL7 v2


@dataclass(frozen=True)
class Hl7Answer:
    ack: bytes
    code: str  # AA, AE or AR
    message: FeedMessage | None


def hl7_message_receive(*, credential: FeedCredential, payload: bytes) -> Hl7Answer:
    """Take one HL7 v2 message for HTTP or MLLP: store it durably, then answer with an ACK.

    - AR (nothing stored): an unreadable MSH, an unsupported type, event or
      version, no PID, an inactive agreement, or a control id (MSH-10) this
      sender already used for different content.
    - AE: stored and processed, but parts had content errors (each in an ERR
      naming segment^sequence^field); the faulty parts are dropped, the rest kept.
    - AA: stored; processing is queued.
    The same control id with the same content is a redelivery: the same answer,
    nothing stored twice. The ACK is built only after the commit.
    Side effects: one FeedMessage and audit events (received, or rejected).
    """
    organisation = credential.organisation
    try:
        if not organisation.agreement_active():
            raise hl7v2.Hl7Rejected(
                hl7v2.Hl7Problem(
                    "MSH", 1, 4, "207", "Your organisation has no active data sharing agreement."
                ),
                _header_or_none(payload),
            )
        converted = hl7v2.convert(payload)
    except hl7v2.Hl7Rejected as rejected:
        return _hl7_refused(credential, rejected.header, rejected.problem)
    header = converted.header
    try:
        received = feed_message_receive(
            credential=credential,
            kind=MessageKind.HL7V2,
            payload=payload,
            idempotency_key=f"hl7v2:{header.control_id}",
            entry_count=converted.entry_count,
        )
    except IdempotencyConflict:
        problem = hl7v2.Hl7Problem("MSH", 1, 10, "205", "MSH-10: this control id was already "
                                   "used for a different message. Use a new one.")  # fmt: skip
        return _hl7_refused(credential, header, problem)
    code = converted.ack_code
    text = "Accepted" if code == "AA" else "Accepted; parts were not kept, see ERR"
    answer = hl7v2.ack(header=header, code=code, problems=converted.problems, text=text,
                       control_id=f"ACK{received.message.public_id.hex[:16]}")  # fmt: skip
    return Hl7Answer(answer, code, received.message)


def _header_or_none(payload: bytes) -> hl7v2.Hl7Header | None:
    try:
        return hl7v2.read_header(hl7v2.decode(payload))
    except hl7v2.Hl7Rejected as rejected:
        return rejected.header


def _hl7_refused(
    credential: FeedCredential, header: hl7v2.Hl7Header | None, problem: hl7v2.Hl7Problem
) -> Hl7Answer:
    audit_event_record(
        action=AuditAction.FEED_REJECTED,
        actor=feed_actor(credential),
        outcome=AuditOutcome.REJECTED,
        detail={
            "kind": MessageKind.HL7V2,
            "code": problem.code,
            "location": problem.location,
            "reason": problem.message,
        },
        source_ods=[credential.organisation.ods_code],
    )
    answer = hl7v2.ack(header=header, code="AR", problems=[problem], text=problem.message)
    return Hl7Answer(answer, "AR", None)


def feed_message_process(*, message_id: int) -> str:
    """Turn one stored message into record entries; safe to run again for the same message.

    Steps:
    1. Claim the message (RECEIVED -> PROCESSING) with a conditional update;
       if another worker has it, do nothing.
    2. Parse and validate (ingestion.fhir). A message that cannot be read at
       all is REJECTED with its reason.
    3. Group entries by person. No NHS number, an invalid one or conflicting
       ones: parked in the matching queue, never guessed.
    4. In one transaction: per person (in NHS number order, so two workers
       never deadlock) take the person's lock, ask the opt-out gate, match or
       create, upsert each entry; apply deletes; write the receipt and the
       audit events.
    Returns the final status.
    """
    claimed = FeedMessage.objects.filter(id=message_id, status=MessageStatus.RECEIVED).update(
        status=MessageStatus.PROCESSING, started_at=timezone.now(), attempts=F("attempts") + 1
    )
    if claimed != 1:
        return "not-claimed"
    with transaction.atomic():
        # Held until commit; a worker that dies drops it with its connection,
        # which is how the sweep tells a dead worker's message from a live one.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)",
                [MESSAGE_LOCK_NAMESPACE, _lock_key(message_id)],
            )
        return _process_claimed(message_id)


MESSAGE_LOCK_NAMESPACE = 7402


def _lock_key(message_id: int) -> int:
    return message_id % 2_147_483_647


def _process_claimed(message_id: int) -> str:
    message = FeedMessage.objects.select_related("organisation", "credential").get(id=message_id)
    organisation = message.organisation
    actor = feed_actor(message.credential)
    try:
        if message.attempts > settings.FEED_MAX_ATTEMPTS:
            raise FeedRejected(
                "processing-failed",
                "The message failed processing repeatedly; the platform team has been alerted.",
                status=500,
            )
        if not organisation.agreement_active():
            raise FeedRejected(
                "agreement-inactive",
                "The organisation has no active data sharing agreement.",
                status=403,
            )
        converted = None
        data, media = bytes(message.payload), _media(message.kind)
        if message.kind == MessageKind.HL7V2:
            converted = _hl7_converted(data)
            data = json.dumps(converted.bundle).encode()
        bundle = parse_bundle(data, media, max_entries=settings.FEED_MAX_ENTRIES)
    except FeedRejected as rejected:
        _finish_rejected(message, actor, rejected)
        return MessageStatus.REJECTED
    outcome = _apply(message, bundle, organisation)
    if converted is not None:
        _hl7_issues(converted, outcome)
        if converted.merge is not None:
            _hl7_merge(message, organisation, converted, converted.merge, outcome)
    message.status = MessageStatus.DONE
    message.finished_at = timezone.now()
    message.counts = {k: outcome.counts.get(k, 0) for k in RECEIPT_COUNTS}
    if outcome.counts.get("merged"):
        message.counts["merged"] = outcome.counts["merged"]  # HL7 A40 only
    message.issues = outcome.issues
    message.payload = b""
    message.save(update_fields=["status", "finished_at", "counts", "issues", "payload"])
    audit_event_record(
        action=AuditAction.FEED_PROCESSED,
        actor=actor,
        detail={"message": str(message.public_id), "counts": message.counts},
        source_ods=[organisation.ods_code],
    )
    org_id = organisation.pk
    transaction.on_commit(lambda: organisation_feed_seen(organisation_id=org_id))
    logger.info("feed message %s done: %s", message.public_id, message.counts)
    return MessageStatus.DONE


RECEIPT_COUNTS = ("created", "updated", "unchanged", "deleted", "rejected", "parked", "blocked")


def _hl7_converted(payload: bytes) -> hl7v2.Converted:
    try:
        return hl7v2.convert(payload)
    except hl7v2.Hl7Rejected as rejected:  # accepted at receipt, so only if the rules changed
        raise FeedRejected("hl7v2-rejected", rejected.problem.message) from rejected


def _hl7_issues(converted: hl7v2.Converted, outcome: _Outcome) -> None:
    for problem in converted.problems:
        outcome.issues.append({
            "entry": None,
            "severity": "error" if problem.severity == "E" else "warning",
            "code": f"hl7v2-{problem.code}",
            "diagnostics": problem.message,
            "expression": [problem.location] if problem.location else [],
        })  # fmt: skip


def _hl7_merge(
    message: FeedMessage,
    organisation: Organisation,
    converted: hl7v2.Converted,
    merge: hl7v2.Merge,
    outcome: _Outcome,
) -> None:
    """A40: move this sender's entries from the merged-away person to the surviving one.

    Only the sender's own entries move: it speaks for its records, not for
    other organisations'. Both people are locked in NHS number order; an
    opted-out survivor gets nothing (the entries are removed instead).
    """
    survivor_number = next(
        (i["value"] for i in converted.bundle["entry"][0]["resource"].get("identifier", [])
         if i.get("system") == NHS_NUMBER_SYSTEM), "",
    )  # fmt: skip
    actor = AuditActor.system(INGESTION, org_ods=organisation.ods_code)
    survivor_id = converted.bundle["entry"][0]["resource"]["id"]
    prior_id = merge.prior_patient_id
    if (
        prior_id
        and prior_id != survivor_id
        and entry_remove(source_org=organisation, resource_type="Patient", source_id=prior_id)
    ):
        outcome.counts["deleted"] += 1
    if not merge.prior_nhs_number or not nhs_number_is_valid(survivor_number):
        return
    if merge.prior_nhs_number == survivor_number:
        return
    for number in sorted({merge.prior_nhs_number, survivor_number}):
        patient_lock(nhs_number=number)
    moved = patient_entries_merge(
        source_org=organisation, from_nhs_number=merge.prior_nhs_number,
        to_nhs_number=survivor_number, blocked=optout_blocks(nhs_number=survivor_number),
    )  # fmt: skip
    outcome.counts["merged"] += moved.entries
    audit_event_record(
        action=AuditAction.MATCH_DECISION,
        actor=actor,
        subject=AuditSubject(patient_id=moved.survivor_id, nhs_number=survivor_number),
        detail={
            "message": str(message.public_id),
            "decision": "merged",
            "merged_from": str(moved.merged_id) if moved.merged_id else None,
            "merged_nhs_number": merge.prior_nhs_number,
            "entries": moved.entries,
            "merged_person_removed": moved.merged_removed,
        },
        source_ods=[organisation.ods_code],
    )


def _finish_rejected(message: FeedMessage, actor: AuditActor, rejected: FeedRejected) -> None:
    with transaction.atomic():
        message.status = MessageStatus.REJECTED
        message.finished_at = timezone.now()
        message.counts = {k: 0 for k in RECEIPT_COUNTS} | {"rejected": message.entry_count}
        message.issues = [
            {
                "entry": None,
                "severity": "error",
                "code": rejected.code,
                "diagnostics": rejected.message,
                "expression": [rejected.path],
            }
        ]
        message.payload = b""
        message.save(update_fields=["status", "finished_at", "counts", "issues", "payload"])
        audit_event_record(
            action=AuditAction.FEED_REJECTED,
            actor=actor,
            outcome=AuditOutcome.REJECTED,
            detail={"message": str(message.public_id), "reason": rejected.code},
            source_ods=[message.organisation.ods_code],
        )
    logger.info("feed message %s rejected: %s", message.public_id, rejected.code)


@dataclass
class _Person:
    """The entries of one bundle that belong to one person."""

    nhs_number: str = ""
    park_reason: str = ""
    birth_date: datetime.date | None = None
    entries: list[ParsedEntry] = field(default_factory=list)


def _group(
    bundle: ParsedBundle, organisation: Organisation
) -> tuple[dict[str, _Person], list[ParsedEntry]]:
    """Group entries by the person they belong to; return the groups and the deletes."""
    by_index = {e.index: e for e in bundle.entries}
    groups: dict[str, _Person] = defaultdict(_Person)
    deletes: list[ParsedEntry] = []
    for entry in bundle.entries:
        if entry.deleted:
            deletes.append(entry)
            continue
        link = entry.patient
        assert link is not None  # the parser resolved or rejected every entry
        if link.kind == "bundle":
            patient_entry = by_index[int(link.value)]
            numbers = [n for n in patient_entry.nhs_numbers if n]
            key = f"bundle:{patient_entry.index}"
            person = groups[key]
            if len(set(numbers)) > 1:
                person.park_reason = ParkReason.CONFLICTING_NHS_NUMBERS
            elif not numbers:
                person.park_reason = ParkReason.NO_NHS_NUMBER
            elif not nhs_number_is_valid(numbers[0]):
                person.park_reason = ParkReason.INVALID_NHS_NUMBER
            else:
                person.nhs_number = nhs_number_normalise(numbers[0])
            birth = patient_entry.resource.get("birthDate")
            if isinstance(birth, str) and len(birth) == 10:
                person.birth_date = datetime.date.fromisoformat(birth)
        elif link.kind == "source-id":
            key_row = (
                SourceKey.objects.filter(
                    source_org=organisation, resource_type="Patient", source_id=link.value
                )
                .select_related("patient")
                .first()
            )
            if key_row is None:
                person = groups[f"unknown:{link.value}"]
                person.park_reason = ParkReason.UNKNOWN_PATIENT
            else:
                person = groups[f"nhs:{key_row.patient.nhs_number}"]
                person.nhs_number = key_row.patient.nhs_number
        else:
            number = nhs_number_normalise(link.value)
            person = groups[f"nhs:{number}"]
            if nhs_number_is_valid(number):
                person.nhs_number = number
            else:
                person.park_reason = ParkReason.INVALID_NHS_NUMBER
        person.entries.append(entry)
    # Two groups for one NHS number (a Patient entry and a logical reference) are one person.
    merged: dict[str, _Person] = {}
    for key, person in groups.items():
        target = f"nhs:{person.nhs_number}" if person.nhs_number and not person.park_reason else key
        if target in merged:
            merged[target].entries.extend(person.entries)
            merged[target].birth_date = merged[target].birth_date or person.birth_date
        else:
            merged[target] = person
    return merged, deletes


def _entry_data(entry: ParsedEntry) -> EntryData:
    return EntryData(
        resource_type=entry.resource_type,
        source_id=entry.source_id,
        section=entry.section,
        resource=entry.resource,
        content_hash=entry.content_hash,
        version_id=entry.version_id,
        source_updated_at=entry.last_updated,
        effective_at=entry.effective_at,
        status=entry.status,
        code_system=entry.code_system,
        code=entry.code,
        code_display=entry.code_display,
        sensitivity=entry.sensitivity,
        codes=entry.codes,
    )


def _park(message: FeedMessage, person: _Person, reason: str, outcome: _Outcome) -> None:
    for entry in person.entries:
        MatchQueueItem.objects.create(
            message=message,
            organisation=message.organisation,
            entry_index=entry.index,
            resource_type=entry.resource_type,
            source_id=entry.source_id,
            reason=reason,
            nhs_number_sent=person.nhs_number,
            resource=entry.resource,
        )
        outcome.counts["parked"] += 1
    outcome.issues.append(
        {
            "entry": min(e.index for e in person.entries),
            "severity": "warning",
            "code": f"parked-{reason}",
            "diagnostics": (
                f"{len(person.entries)} entries parked for review: {ParkReason(reason).label}."
            ),
            "expression": [],
        }
    )
    _match_not_stored(message, "parked", reason, len(person.entries))


def _match_not_stored(message: FeedMessage, decision: str, reason: str, entries: int) -> None:
    """The audit event of a person's entries that were parked or rejected, not stored."""
    audit_event_record(
        action=AuditAction.MATCH_DECISION,
        actor=AuditActor.system(INGESTION, org_ods=message.organisation.ods_code),
        outcome=AuditOutcome.REJECTED,
        detail={
            "message": str(message.public_id),
            "decision": decision,
            "reason": reason,
            "entries": entries,
        },
        source_ods=[message.organisation.ods_code],
    )


def _reject_conflicting(message: FeedMessage, person: _Person, outcome: _Outcome) -> None:
    """A Patient carrying two different NHS numbers: the source must correct it."""
    first = min(e.index for e in person.entries)
    outcome.issues.append(
        {
            "entry": first,
            "severity": "error",
            "code": "conflicting-nhs-numbers",
            "diagnostics": (
                f"The Patient carries different NHS numbers; its {len(person.entries)} "
                "entries were not stored. Send one NHS number."
            ),
            "expression": ["Patient.identifier"],
        }
    )
    outcome.counts["rejected"] += len(person.entries)
    _match_not_stored(message, "rejected", "conflicting-nhs-numbers", len(person.entries))


def _dissent_coded(person: _Person) -> bool:
    codes = set(settings.OPTOUT_FEED_CODES)
    return bool(codes) and any(f"{e.code_system}|{e.code}" in codes for e in person.entries)


def _register_dissent(message: FeedMessage, person: _Person, outcome: _Outcome) -> None:
    """A GP practice's feed carrying a dissent code records an opt-out for that practice.

    Only a GP practice's own feed counts; the opt-out then removes any record
    and the gate blocks this message's entries for the person.
    """
    organisation = message.organisation
    if organisation.kind != OrganisationKind.GP_PRACTICE or not _dissent_coded(person):
        return
    try:
        optout_register(
            nhs_number=person.nhs_number,
            practice=organisation,
            route=OptOutRoute.FEED_CODE,
            recorded_by_system=message.credential.system,
        )
    except PermissionDenied:
        outcome.issues.append(
            {
                "entry": min(e.index for e in person.entries),
                "severity": "warning",
                "code": "dissent-not-recorded",
                "diagnostics": "A dissent code was sent for someone registered with another "
                "practice; their practice must record the opt-out.",
                "expression": [],
            }
        )


def _move_optout_holding(organisation: Organisation, person: _Person) -> None:
    """The registration authority moved an opted-out person: their opt-out follows them.

    Nothing is stored for the person (the opt-out stands); only the holding
    of their opt-out moves to the practice the authority names, which may
    then record an opt-in. The caller holds the person's lock.
    """
    if organisation.kind != OrganisationKind.REGISTRATION_AUTHORITY:
        return
    named = {
        registered_gp_named(entry.resource)
        for entry in person.entries
        if entry.resource_type == "Patient"
    } - {""}
    if len(named) != 1:
        return
    practice = Organisation.objects.filter(
        ods_code=named.pop(), kind=OrganisationKind.GP_PRACTICE
    ).first()
    if practice is not None:
        optout_holding_move(nhs_number=person.nhs_number, to_practice=practice)


def _apply(message: FeedMessage, bundle: ParsedBundle, organisation: Organisation) -> _Outcome:
    outcome = _Outcome()
    for issue in bundle.issues:
        outcome.issue(issue)
    groups, deletes = _group(bundle, organisation)
    system_actor = AuditActor.system(INGESTION, org_ods=organisation.ods_code)
    for _, person in sorted(groups.items(), key=lambda item: item[1].nhs_number or item[0]):
        if person.park_reason == ParkReason.CONFLICTING_NHS_NUMBERS:
            _reject_conflicting(message, person, outcome)
            continue
        if person.park_reason:
            _park(message, person, person.park_reason, outcome)
            continue
        patient_lock(nhs_number=person.nhs_number)
        _register_dissent(message, person, outcome)
        if optout_blocks(nhs_number=person.nhs_number):
            _move_optout_holding(organisation, person)
            outcome.counts["blocked"] += len(person.entries)
            continue
        match = patient_match(
            demographics=Demographics(nhs_number=person.nhs_number, birth_date=person.birth_date)
        )
        if match.outcome == MatchOutcome.AMBIGUOUS:
            _park(message, person, ParkReason.DEMOGRAPHICS_CONFLICT, outcome)
            continue
        patient = match.patient if match.outcome == MatchOutcome.MATCHED else None
        if patient is None:
            patient = patient_create(nhs_number=person.nhs_number)
        audit_event_record(
            action=AuditAction.MATCH_DECISION,
            actor=system_actor,
            subject=AuditSubject(
                patient_id=patient.public_id,
                nhs_number=patient.nhs_number,
                gp_ods=patient.registered_gp_ods,
            ),
            detail={
                "message": str(message.public_id),
                "decision": "matched" if match.patient else "created",
            },
            source_ods=[organisation.ods_code],
        )
        kept: list[ParsedEntry] = []
        for entry in person.entries:
            if entry.status == "entered-in-error":
                removed = entry_remove(
                    source_org=organisation,
                    resource_type=entry.resource_type,
                    source_id=entry.source_id,
                )
                outcome.counts["deleted" if removed else "unchanged"] += 1
            else:
                kept.append(entry)
        results = entries_upsert(
            patient=patient,
            source_org=organisation,
            source_system=message.credential.system,
            items=[_entry_data(entry) for entry in kept],
            feed_message_id=message.public_id,
        )
        demographics_changed = False
        for entry, result in zip(kept, results, strict=True):
            outcome.counts[str(result) if result != UpsertResult.STALE else "unchanged"] += 1
            demographics_changed |= entry.resource_type == "Patient" and result in (
                UpsertResult.CREATED,
                UpsertResult.UPDATED,
            )
        if demographics_changed:
            patient_demographics_refresh(patient=patient, asserted_by=system_actor)
    for entry in deletes:
        removed = entry_remove(
            source_org=organisation, resource_type=entry.resource_type, source_id=entry.source_id
        )
        outcome.counts["deleted" if removed else "unchanged"] += 1
    return outcome


def feed_message_release(*, message_id: int) -> None:
    """Hand a claimed message back (its processing failed part-way) so it can run again."""
    FeedMessage.objects.filter(id=message_id, status=MessageStatus.PROCESSING).update(
        status=MessageStatus.RECEIVED
    )


def feed_messages_sweep(*, older_than: datetime.timedelta) -> int:
    """Re-queue messages whose worker died (stuck PROCESSING) or whose task was lost.

    A PROCESSING message is stuck only if no session holds its processing
    lock: a live worker always does, so a slow message is never taken twice.
    A message still RECEIVED after `older_than` was stored but its task never
    ran (for example Redis was down at commit). Side effects: a task for each.
    """
    cutoff = timezone.now() - older_than
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE ingestion_feedmessage m SET status = %s
            WHERE m.status = %s AND m.started_at <= %s
              AND NOT EXISTS (
                  SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.classid = %s::int::oid
                    AND l.objid = (m.id %% 2147483647)::int::oid AND l.objsubid = 2)
            """,
            [MessageStatus.RECEIVED, MessageStatus.PROCESSING, cutoff, MESSAGE_LOCK_NAMESPACE],
        )
    waiting = list(
        FeedMessage.objects.filter(
            status=MessageStatus.RECEIVED, received_at__lte=cutoff
        ).values_list("pk", flat=True)
    )
    for pk in waiting:
        _enqueue(pk)
    return len(waiting)


# ---------------------------------------------------------------- opt-out purge


def personal_data_purge(nhs_number: str) -> dict[str, int]:
    """Remove what ingestion holds for an opted-out person (called by the opt-out, locked).

    Parked matching-queue items that name the number, and the person's entries
    in raw messages still waiting to be processed (other people's entries in
    the same message are kept, so nothing else is lost).
    """
    parked = MatchQueueItem.objects.filter(
        Q(nhs_number_sent=nhs_number)
        | Q(resource__identifier__contains=[{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}])
    ).delete()[0]
    redacted = 0
    pending = FeedMessage.objects.select_for_update(skip_locked=True).filter(
        status=MessageStatus.RECEIVED
    )
    for message in pending:
        payload = bytes(message.payload)
        if nhs_number.encode() not in payload:
            continue
        if message.kind == MessageKind.HL7V2:
            # One person per HL7 v2 message: nothing in it may be kept.
            message.payload = b""
            message.status = MessageStatus.DONE
            message.finished_at = timezone.now()
            message.counts = {**dict.fromkeys(RECEIPT_COUNTS, 0), "blocked": message.entry_count}
            message.save(update_fields=["payload", "status", "finished_at", "counts"])
        else:
            message.payload = redact_person(payload, _media(message.kind), nhs_number)
            message.save(update_fields=["payload"])
        redacted += 1
    return {"parked_items": parked, "pending_messages_redacted": redacted}


def redact_person(payload: bytes, media: Literal["json", "xml"], nhs_number: str) -> bytes:
    """The message without the entries of the person with this NHS number.

    Drops every entry that carries the number and every entry that refers to a
    Patient entry that does.
    """
    if media == "xml":
        root = etree.fromstring(
            payload, parser=etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        )
        entries = [(e, etree.tostring(e).decode()) for e in root.findall(f"{{{FHIR_NS}}}entry")]
    else:
        document = json.loads(payload.decode("utf-8-sig"))
        entries = [(e, json.dumps(e)) for e in document.get("entry", [])]
    names: set[str] = set()
    for _, text in entries:
        if nhs_number in text and "Patient" in text:
            names |= set(
                re.findall(r'(urn:uuid:[0-9a-fA-F-]{36}|Patient/[A-Za-z0-9.\-]{1,64})"', text)
            )
    drop = [e for e, text in entries if nhs_number in text or any(n in text for n in names)]
    if media == "xml":
        for element in drop:
            root.remove(element)
        return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    document["entry"] = [e for e in document["entry"] if not any(e is d for d in drop)]
    return json.dumps(document).encode()
