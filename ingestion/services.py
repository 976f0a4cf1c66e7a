"""Feed ingestion: credentials, receiving a message, processing it, sweeping stuck ones."""

from __future__ import annotations

import array
import datetime
import hashlib
import hmac
import itertools
import json
import logging
import re
import secrets
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import KombuError
from lxml import etree
from redis.exceptions import RedisError

from audit.models import AuditAction, AuditOutcome
from audit.services import AuditActor, AuditSubject, audit_event_record
from ingestion import hl7v2
from ingestion.fhir import (
    FHIR_NS,
    NHS_NUMBER_SYSTEM,
    EntryIssue,
    Envelope,
    FeedRejected,
    ParsedBundle,
    ParsedEntry,
    parse_bundle,
    read_envelope,
    validate_resource,
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
from sharedrecord.access import registered_gp_named
from sharedrecord.demographics import patient_demographics_refresh
from sharedrecord.entries import (
    EntryData,
    UpsertResult,
    entries_upsert,
    entry_remove,
    patient_create,
    patient_entries_merge,
    patient_lock,
)
from sharedrecord.exceptions import PermissionDenied
from sharedrecord.matching import (
    Demographics,
    MatchOutcome,
    nhs_number_is_valid,
    nhs_number_normalise,
    patient_match,
)
from sharedrecord.models import Organisation, OrganisationKind, SourceKey
from sharedrecord.organisations import organisation_feed_seen

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


# ---------------------------------------------------------------- screening at receipt
# What PostgreSQL, the parser or the worker would refuse later is refused here, at
# the edge, in the protocol's own shape: nothing is accepted that a later stage refuses.

# C0 control characters other than tab, LF and CR (FHIR strings and HL7 fields allow
# only those), and UTF-16 surrogates, which only a lone \uD800-style escape leaves in
# a decoded string: PostgreSQL text and jsonb refuse NUL, and UTF-8 has no surrogates.
_BAD_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
# A JSON escape that may decode to one of those (cheap first look; the parsed
# document decides, since the JSON text "\\u0000" is a backslash and letters).
_SUSPECT_ESCAPE = re.compile(r"\\u(?:00[01][0-9a-fA-F]|[dD][89a-fA-F][0-9a-fA-F]{2})")
_BRACKET_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKET = bytes(i for i in range(256) if i not in b"[]{}")


def _outside_strings(text: str) -> bytes:
    """What a JSON text holds outside its strings (brackets, numbers, literals), as ASCII.

    Drops escaped backslashes, then escaped quotes (left to right, as JSON reads
    them), so every quote left opens or closes a string; keeps every other piece
    between quotes. Each step is a linear pass in C.
    """
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    return "".join(unescaped.split('"')[::2]).encode("ascii", "ignore")


def json_depth(text: str) -> int:
    """How deeply a JSON text nests arrays and objects, without parsing (or recursing).

    Each opening bracket outside strings is +1 and each closing one -1; the
    deepest running sum is the depth. Broken JSON gets some number; the parser
    then says why it is broken.
    """
    return _depth(_outside_strings(text))


def _depth(outside: bytes) -> int:
    steps = array.array("b", outside.translate(_BRACKET_STEP, _NOT_BRACKET))
    return max(itertools.accumulate(steps), default=0)


def bad_character_path(document: Any, root: str) -> str | None:
    """The FHIR path of the first string (or key) holding a refused character, or None.

    Iterative, so the depth of the document does not matter.
    """
    stack: list[tuple[str, Any]] = [(root, document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _BAD_CHARACTER.search(value):
                return path
        elif isinstance(value, dict):
            if any(_BAD_CHARACTER.search(key) for key in value):
                return path
            stack.extend((f"{path}.{k}", v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return None


def feed_payload_check(payload: bytes, media: Literal["json", "xml"]) -> None:
    """Refuse, before anything parses it fully, a payload a later stage would choke on.

    Nesting deeper than FEED_MAX_DEPTH (Python's json, the validator and the
    worker recurse). JSON strings (and keys) holding NUL, other C0 control
    characters (tab, CR and LF are allowed) or lone surrogates; XML 1.0 already
    forbids those, even as character references, and the XML parser refuses them.
    Raises FeedRejected (400) naming the path, never the value.
    """
    limit = settings.FEED_MAX_DEPTH
    too_deep = FeedRejected(
        "too-deep", f"The message nests elements, arrays or objects more than {limit} levels deep."
    )
    if media == "xml":
        if _xml_deeper_than(payload, limit):
            raise too_deep
        return
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FeedRejected("invalid-encoding", "The message is not UTF-8.") from exc
    outside = _outside_strings(text)
    if _depth(outside) > limit:
        raise too_deep
    digits = sys.get_int_max_str_digits()
    if digits and re.search(rb"\d{%d}" % (digits + 1), outside):
        # Python's json refuses to read such an integer (ValueError, not a JSON error).
        raise FeedRejected("invalid-json", f"A number has more than {digits} digits.")
    if not _SUSPECT_ESCAPE.search(text):
        return
    try:
        document = json.loads(text)
    except ValueError:
        return  # read_envelope says where it is broken
    path = bad_character_path(document, "Bundle")
    if path is not None:
        raise FeedRejected(
            "invalid-character",
            "A string holds a control character or a lone surrogate; only tab, CR and LF "
            "are allowed.",
            path=path,
        )


def _xml_deeper_than(payload: bytes, limit: int) -> bool:
    """Whether any element lies deeper than `limit` (the root is level 1).

    The same safe parser as the envelope's (no entities, no network, no DTD);
    the path of `limit` child steps is walked by libxml2, in C, without recursion.
    """
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(payload, parser=parser)
    except etree.XMLSyntaxError:
        return False  # read_envelope says why it cannot be read
    return bool(root.xpath("/".join(["*"] * limit)))


def feed_envelope_read(payload: bytes, media: Literal["json", "xml"]) -> Envelope:
    """Check a FHIR message at receipt: its characters and depth, then its envelope."""
    feed_payload_check(payload, media)
    return read_envelope(payload, media, max_entries=settings.FEED_MAX_ENTRIES)


def feed_message_refuse(
    *, credential: FeedCredential, kind: str, code: str, location: str, reason: str
) -> None:
    """Audit a message refused at receipt (nothing was stored).

    `reason` is our own text about the message's form, never its content.
    Side effects: one audit event.
    """
    audit_event_record(
        action=AuditAction.FEED_REJECTED,
        actor=feed_actor(credential),
        outcome=AuditOutcome.REJECTED,
        detail={"kind": kind, "code": code, "location": location, "reason": reason},
        source_ods=[credential.organisation.ods_code],
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
                transaction.on_commit(lambda: _enqueue_after_commit(message))
            return Received(message, duplicate=False)
        except IntegrityError:
            # A concurrent delivery of the same message won the insert.
            existing = FeedMessage.objects.get(organisation=organisation, idempotency_key=key)
    if existing.payload_sha256 != digest:
        raise IdempotencyConflict
    return Received(existing, duplicate=True)


def _enqueue(message_pk: int) -> None:
    """Queue processing with Celery's usual publish retries (the sweep and other workers)."""
    from ingestion.tasks import feed_message_process_task

    feed_message_process_task.delay(message_pk)


BROKER_ERRORS = (KombuError, RedisError, OSError)


def _enqueue_after_commit(message: FeedMessage) -> None:
    """Queue a just-committed message without making its sender wait for the broker.

    The message is already stored, so the sender's receipt is true whatever
    happens here. With the broker down, one quick try fails and the periodic
    sweep queues the message once the broker is back (shared/PITFALLS.md:
    publish retries would hold the request for many seconds).
    """
    from ingestion.tasks import feed_message_process_task

    try:
        with feed_message_process_task.app.producer_or_acquire() as producer:
            # One quick connection try: kombu's own would retry for seconds first.
            producer.connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=1
            )
            feed_message_process_task.apply_async((message.pk,), retry=False, producer=producer)
    except BROKER_ERRORS as exc:
        logger.warning(
            "feed message %s stored; queueing it failed (%s), the sweep will queue it",
            message.public_id,
            type(exc).__name__,
        )


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
    text = hl7v2.decode(payload)
    try:
        if not organisation.agreement_active():
            raise hl7v2.Hl7Rejected(
                hl7v2.Hl7Problem(
                    "MSH", 1, 4, "207", "Your organisation has no active data sharing agreement."
                ),
                _header_of(text),
            )
        converted = _hl7_checked(text, payload)
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


def _header_of(text: str) -> hl7v2.Hl7Header | None:
    """The MSH an AR answers in the sender's terms (refused characters left out of it)."""
    try:
        return hl7v2.read_header(_HL7_BAD_CHARACTER.sub("", text))
    except hl7v2.Hl7Rejected as rejected:
        return rejected.header


# In ER7 only CR ends a segment (decode() turned LF into CR) and tab may stand in text.
_HL7_BAD_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")


def _hl7_checked(text: str, payload: bytes) -> hl7v2.Converted:
    """Convert a message after the receipt checks the worker relies on; raises Hl7Rejected.

    1. No control character in any field, written or as a \\X..\\ hex escape
       (PostgreSQL refuses NUL; FHIR strings allow only tab, CR and LF).
    2. The conversion itself (MSH, type, event, version, PID).
    3. No more record entries than FEED_MAX_ENTRIES, the limit the worker applies.
    4. Nothing in the converted Bundle the FHIR edge would refuse (a last guard).
    """
    problem = _hl7_character_problem(text)
    if problem is not None:
        raise hl7v2.Hl7Rejected(problem, _header_of(text))
    converted = hl7v2.convert(payload)
    limit = settings.FEED_MAX_ENTRIES
    if converted.entry_count > limit:
        raise hl7v2.Hl7Rejected(
            hl7v2.Hl7Problem(
                "", 0, 0, "207",
                f"The message makes {converted.entry_count} record entries (results and the "
                f"rest); the limit is {limit}. Split it.",
            ),
            converted.header,
        )  # fmt: skip
    if bad_character_path(converted.bundle, "Bundle") is not None:
        raise hl7v2.Hl7Rejected(
            hl7v2.Hl7Problem("", 0, 0, "102", "A field decodes to a control character."),
            converted.header,
        )
    return converted


def _hl7_character_problem(text: str) -> hl7v2.Hl7Problem | None:
    """An ERR naming the first field that holds a refused control character, or None."""
    found = _HL7_BAD_CHARACTER.search(text)
    position, code = (found.start(), ord(found.group())) if found else (len(text), 0)
    escape = text[6] if text.startswith("MSH") and len(text) > 7 else "\\"
    hex_escape = re.escape(escape) + "X([0-9A-Fa-f]+)" + re.escape(escape)
    for match in re.finditer(hex_escape, text[:position]):
        digits = match.group(1)
        bad = [b for b in bytes.fromhex(digits[: len(digits) // 2 * 2]) if b < 0x20
               and b not in (0x09, 0x0A, 0x0D)]  # fmt: skip
        if bad:
            position, code = match.start(), bad[0]
            break
    if position == len(text):
        return None
    start = text.rfind("\r", 0, position) + 1
    name = text[start : start + 3]
    if not _SEGMENT_NAME.fullmatch(name):
        return hl7v2.Hl7Problem(
            "", 0, 0, "102", f"A control character (U+{code:04X}) is not allowed."
        )
    sequence = sum(1 for s in text[:start].split("\r") if s[:3] == name) + 1
    separator = text[3] if len(text) > 3 else "|"
    field = text.count(separator, start, position) + (1 if name == "MSH" else 0)
    return hl7v2.Hl7Problem(
        name, sequence, field, "102",
        f"{name}-{field}: a control character (U+{code:04X}) is not allowed; only tab "
        "and segment ends are.",
    )  # fmt: skip


def _hl7_refused(
    credential: FeedCredential, header: hl7v2.Hl7Header | None, problem: hl7v2.Hl7Problem
) -> Hl7Answer:
    feed_message_refuse(
        credential=credential,
        kind=MessageKind.HL7V2,
        code=problem.code,
        location=problem.location,
        reason=problem.message,
    )
    answer = hl7v2.ack(header=header, code="AR", problems=[problem], text=problem.message)
    return Hl7Answer(answer, "AR", None)


RETRYING = "retrying"
RETRY_BASE_SECONDS = 5


@dataclass
class _Progress:
    """Where processing has got to, so a failure can say where without quoting any data."""

    stage: str = "start"
    entries: tuple[ParsedEntry, ...] = ()

    def at(self, stage: str, entries: Iterable[ParsedEntry] = ()) -> None:
        self.stage, self.entries = stage, tuple(entries)


class FeedProcessingInterrupted(Exception):
    """Processing failed and the failure could not be recorded (the database went away).

    Its text names the message and stage only; the message stays claimed until
    the sweep hands it back.
    """


def feed_message_process(*, message_id: int) -> str:
    """Turn one stored message into record entries; safe to run again for the same message.

    Steps:
    1. Claim the message (RECEIVED -> PROCESSING) with a conditional update;
       if another worker has it, do nothing. A message whose workers died more
       than FEED_MAX_ATTEMPTS times is FAILED.
    2. Parse and validate (ingestion.fhir). A message that cannot be read at
       all is REJECTED with its reason.
    3. Group entries by person. No NHS number, an invalid one or conflicting
       ones: parked in the matching queue, never guessed.
    4. In one transaction: per person (in NHS number order, so two workers
       never deadlock) take the person's lock, ask the opt-out gate, match or
       create, upsert each entry; apply deletes; write the receipt and the
       audit events.
    5. If anything fails, the transaction rolls back and the attempt is
       recorded with its stage and entry (never the exception's text): the
       message waits for another attempt (RETRYING) or, after the last,
       is FAILED, keeping its payload for an operator's replay.
    Returns the final status, RETRYING or "not-claimed".
    """
    claimed = FeedMessage.objects.filter(id=message_id, status=MessageStatus.RECEIVED).update(
        status=MessageStatus.PROCESSING,
        started_at=timezone.now(),
        attempts=F("attempts") + 1,
        retry_at=None,
    )
    if claimed != 1:
        return "not-claimed"
    progress = _Progress()
    try:
        with transaction.atomic():
            # Held until commit; a worker that dies drops it with its connection,
            # which is how the sweep tells a dead worker's message from a live one.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)",
                    [MESSAGE_LOCK_NAMESPACE, _lock_key(message_id)],
                )
            return _process_claimed(message_id, progress)
    except Exception as exc:  # recorded on the message and logged by class: never lost
        return _attempt_failed(message_id, progress, exc)


MESSAGE_LOCK_NAMESPACE = 7402


def _lock_key(message_id: int) -> int:
    return message_id % 2_147_483_647


def _process_claimed(message_id: int, progress: _Progress) -> str:
    message = FeedMessage.objects.select_related("organisation", "credential").get(id=message_id)
    organisation = message.organisation
    actor = feed_actor(message.credential)
    if message.attempts > settings.FEED_MAX_ATTEMPTS:
        # Every earlier attempt ended with its worker gone (a failure is recorded otherwise).
        return _record_failure(
            message, {"stage": "worker-lost", "entries": [], "expression": [], "error": ""}
        )
    converted = None
    try:
        if not organisation.agreement_active():
            raise FeedRejected(
                "agreement-inactive",
                "The organisation has no active data sharing agreement.",
                status=403,
            )
        data, media = bytes(message.payload), _media(message.kind)
        if message.kind == MessageKind.HL7V2:
            progress.at("convert")
            converted = _hl7_converted(data)
            data = json.dumps(converted.bundle).encode()
        progress.at("parse")
        bundle = parse_bundle(data, media, max_entries=settings.FEED_MAX_ENTRIES)
    except FeedRejected as rejected:
        _finish_rejected(message, actor, rejected)
        return MessageStatus.REJECTED
    as_of = _hl7_time(converted.header) if converted is not None else None
    outcome = _apply(message, bundle, organisation, progress, as_of=as_of)
    if converted is not None:
        _hl7_issues(converted, outcome)
        for merge in converted.merges:  # A40: every PID/MRG pair, in order
            progress.at("merge")
            _hl7_merge(message, organisation, merge, outcome, as_of)
    progress.at("receipt")
    message.status = MessageStatus.DONE
    message.finished_at = timezone.now()
    message.counts = {k: outcome.counts.get(k, 0) for k in RECEIPT_COUNTS}
    if outcome.counts.get("merged"):
        message.counts["merged"] = outcome.counts["merged"]  # HL7 A40 only
    message.issues = outcome.issues
    message.payload = b""
    message.failure = {}
    message.save(update_fields=["status", "finished_at", "counts", "issues", "payload", "failure"])
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


def _hl7_time(header: hl7v2.Hl7Header) -> datetime.datetime | None:
    """MSH-7, the message time: it orders a sender's removals (A11, A40) like its updates."""
    value = hl7v2.fhir_datetime(header.sent_at)
    if not value or "T" not in value:
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        return None


# ---------------------------------------------------------------- failed attempts


def _attempt_failed(message_id: int, progress: _Progress, exc: Exception) -> str:
    """Record a failed attempt: where it failed, and the exception's class, never its text.

    PostgreSQL's error text quotes the values it refused, so neither the
    receipt, the audit trail, the log nor Celery's result store sees it.
    """
    stage, error = progress.stage, type(exc).__name__
    try:
        if not connection.is_usable():
            connection.close()  # a lost session: the next query opens a new one
        with transaction.atomic():
            message = (
                FeedMessage.objects.select_for_update()
                .select_related("organisation")
                .filter(id=message_id)
                .first()
            )
            if message is None or message.status != MessageStatus.PROCESSING:
                # Committed before the failure (an on-commit step), or handed on by the sweep.
                return message.status if message is not None else "not-claimed"
            entries, expression = _failure_where(message, progress)
            failure = {"stage": stage, "entries": entries, "expression": expression,
                       "error": error}  # fmt: skip
            return _record_failure(message, failure)
    except Exception:
        # Not logger.exception: the traceback would carry the exception's text.
        logger.error(
            "feed message #%s: attempt failed at stage %s (%s) and could not be recorded; "
            "the sweep will hand it back",
            message_id,
            stage,
            error,
        )
        raise FeedProcessingInterrupted(
            f"message #{message_id} failed at stage {stage} ({error})"
        ) from None


def _record_failure(message: FeedMessage, failure: dict[str, Any]) -> str:
    """Save a failed attempt on the message: another attempt later, or FAILED after the last."""
    now = timezone.now()
    attempt, maximum = message.attempts, settings.FEED_MAX_ATTEMPTS
    failure = {**failure, "attempt": attempt}
    message.failure = failure
    if attempt < maximum:
        message.status = MessageStatus.RECEIVED
        message.retry_at = now + datetime.timedelta(seconds=feed_retry_delay(attempt=attempt))
        message.save(update_fields=["status", "failure", "retry_at"])
        logger.warning(
            "feed message %s: attempt %s of %s failed at stage %s (%s); it will be retried",
            message.public_id, attempt, maximum, failure["stage"], failure["error"] or "-",
        )  # fmt: skip
        return RETRYING
    message.status = MessageStatus.FAILED
    message.finished_at = now
    message.retry_at = None
    message.counts = dict.fromkeys(RECEIPT_COUNTS, 0)
    message.issues = [failure_issue(failure, final=True)]
    message.save(update_fields=["status", "failure", "retry_at", "finished_at", "counts", "issues"])
    audit_event_record(
        action=AuditAction.FEED_REJECTED,
        actor=AuditActor.system(INGESTION, org_ods=message.organisation.ods_code),
        outcome=AuditOutcome.FAILED,
        detail={
            "message": str(message.public_id),
            "reason": "processing-failed",
            "stage": failure["stage"],
            "entries": failure["entries"],
            "error": failure["error"],
            "attempts": attempt,
        },
        source_ods=[message.organisation.ods_code],
    )
    logger.error(
        "feed message %s failed at stage %s after %s attempts (%s); it waits for a replay",
        message.public_id, failure["stage"], attempt, failure["error"] or "worker lost",
    )  # fmt: skip
    return MessageStatus.FAILED


def feed_retry_delay(*, attempt: int) -> int:
    """Seconds before the next attempt after `attempt` failed ones: 5, 10, 20 ... at most 300."""
    return int(min(300, RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1)))


def feed_message_retry_delay(*, message_id: int) -> float:
    """Seconds until a message waiting after a failed attempt may run again."""
    retry_at = FeedMessage.objects.filter(id=message_id).values_list("retry_at", flat=True).first()
    if retry_at is None:
        return float(RETRY_BASE_SECONDS)
    return max(0.0, (retry_at - timezone.now()).total_seconds())


STAGE_TEXT = {
    "start": "starting",
    "convert": "converting the HL7 v2 message",
    "parse": "reading and validating the entries",
    "match": "matching the person",
    "gate": "checking the opt-out registry",
    "upsert": "storing the entries",
    "remove": "removing an entry",
    "merge": "merging two people",
    "receipt": "writing the receipt",
    "worker-lost": "processing (the worker stopped)",
}


def failure_issue(failure: dict[str, Any], *, final: bool, maximum: int = 0) -> dict[str, Any]:
    """The receipt's issue for a failed attempt: stage, entries and paths, never data."""
    stage = str(failure.get("stage", ""))
    entries = [int(i) for i in failure.get("entries", [])]
    where = ""
    if len(entries) == 1:
        where = f" at entry {entries[0]}"
    elif entries:
        where = " in entries " + ", ".join(str(i) for i in entries[:10])
    error = f" ({failure['error']})" if failure.get("error") else ""
    doing = STAGE_TEXT.get(stage, stage)
    if final:
        text = (
            f"Processing failed while {doing}{where}{error} in all {failure.get('attempt')} "
            "attempts. The fault is ours; the platform team has been alerted and will "
            "replay the message."
        )
    else:
        text = (
            f"Attempt {failure.get('attempt')} of {maximum} failed while {doing}{where}"
            f"{error}; it will be tried again."
        )
    return {
        "entry": None,
        "severity": "error" if final else "warning",
        "code": "processing-failed" if final else "attempt-failed",
        "diagnostics": text,
        "expression": list(failure.get("expression", [])),
    }


def _failure_where(message: FeedMessage, progress: _Progress) -> tuple[list[int], list[str]]:
    """Which entries a failed attempt was working on, and the FHIR paths to name.

    A string PostgreSQL cannot store is found by its path. A failure while
    parsing is traced to the first entry that fails validation on its own.
    """
    found: list[tuple[int, Any]] = [(e.index, e.resource) for e in progress.entries]
    media: Literal["json", "xml"] = "json"
    if not found and progress.stage == "parse":
        found, media = _raw_resources(message)
    for index, resource in found:
        path = bad_character_path(resource, f"Bundle.entry[{index}].resource")
        if path is not None:
            return [index], [path]
    if progress.stage == "parse":
        for index, resource in found:
            if _breaks_validation(resource, media):
                return [index], [f"Bundle.entry[{index}].resource"]
        return [], ["Bundle"]
    indexes = [index for index, _ in found]
    return indexes, [f"Bundle.entry[{i}]" for i in indexes[:10]]


def _raw_resources(message: FeedMessage) -> tuple[list[tuple[int, Any]], Literal["json", "xml"]]:
    """The entries' resources as sent (JSON objects, or XML elements as bytes)."""
    payload = bytes(message.payload)
    try:
        if message.kind == MessageKind.FHIR_XML:
            parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
            root = etree.fromstring(payload, parser=parser)
            entries = root.findall(f"{{{FHIR_NS}}}entry")
            holders = [(i, e.find(f"{{{FHIR_NS}}}resource")) for i, e in enumerate(entries)]
            return [
                (i, etree.tostring(h[0])) for i, h in holders if h is not None and len(h)
            ], "xml"
        if message.kind == MessageKind.HL7V2:
            document: Any = hl7v2.convert(payload).bundle
        else:
            document = json.loads(payload.decode("utf-8-sig"))
        items = document.get("entry", [])
        return [(i, e.get("resource")) for i, e in enumerate(items) if isinstance(e, dict)], "json"
    except (ValueError, RecursionError, AttributeError, etree.LxmlError, hl7v2.Hl7Rejected):
        return [], "json"


def _breaks_validation(resource: Any, media: Literal["json", "xml"]) -> bool:
    try:
        data = resource if isinstance(resource, bytes) else json.dumps(resource).encode()
        validate_resource(data, media)
    except Exception:  # tracing which entry breaks the validator: any failure counts
        return True
    return False


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
    merge: hl7v2.Merge,
    outcome: _Outcome,
    as_of: datetime.datetime | None,
) -> None:
    """A40: move this sender's entries from the merged-away person to the surviving one.

    Only the sender's own entries move: it speaks for its records, not for
    other organisations'. Both people are locked in NHS number order; an
    opted-out survivor gets nothing (the entries are removed instead).
    """
    survivor_number = merge.survivor_nhs_number
    actor = AuditActor.system(INGESTION, org_ods=organisation.ods_code)
    survivor_id = merge.survivor_patient_id
    prior_id = merge.prior_patient_id
    if (
        prior_id
        and prior_id != survivor_id
        and entry_remove(
            source_org=organisation, resource_type="Patient", source_id=prior_id, as_of=as_of
        )
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
        times = [e.last_updated for e in person.entries if e.resource_type == "Patient"]
        optout_holding_move(
            nhs_number=person.nhs_number,
            to_practice=practice,
            asserted_by=organisation,
            asserted_at=max((t for t in times if t is not None), default=None),
        )


def _apply(
    message: FeedMessage,
    bundle: ParsedBundle,
    organisation: Organisation,
    progress: _Progress,
    *,
    as_of: datetime.datetime | None = None,
) -> _Outcome:
    """Store each person's entries; `as_of` (HL7 v2's MSH-7) orders removals with no version."""
    outcome = _Outcome()
    for issue in bundle.issues:
        outcome.issue(issue)
    groups, deletes = _group(bundle, organisation)
    system_actor = AuditActor.system(INGESTION, org_ods=organisation.ods_code)
    for _, person in sorted(groups.items(), key=lambda item: item[1].nhs_number or item[0]):
        progress.at("match", person.entries)
        if person.park_reason == ParkReason.CONFLICTING_NHS_NUMBERS:
            _reject_conflicting(message, person, outcome)
            continue
        if person.park_reason:
            _park(message, person, person.park_reason, outcome)
            continue
        progress.at("gate", person.entries)
        patient_lock(nhs_number=person.nhs_number)
        _register_dissent(message, person, outcome)
        if optout_blocks(nhs_number=person.nhs_number):
            _move_optout_holding(organisation, person)
            outcome.counts["blocked"] += len(person.entries)
            continue
        progress.at("match", person.entries)
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
        # A source withdrawing its Patient may end its claim to the registration.
        demographics_changed_by_removal = False
        for entry in person.entries:
            if entry.status == "entered-in-error":
                progress.at("remove", [entry])
                removed = entry_remove(
                    source_org=organisation,
                    resource_type=entry.resource_type,
                    source_id=entry.source_id,
                    version_id=entry.version_id,
                    as_of=entry.last_updated or as_of,
                )
                outcome.counts["deleted" if removed else "unchanged"] += 1
                demographics_changed_by_removal |= (
                    bool(removed) and entry.resource_type == "Patient"
                )
            else:
                kept.append(entry)
        progress.at("upsert", kept)
        results = entries_upsert(
            patient=patient,
            source_org=organisation,
            source_system=message.credential.system,
            items=[_entry_data(entry) for entry in kept],
            feed_message_id=message.public_id,
        )
        demographics_changed = demographics_changed_by_removal
        for entry, result in zip(kept, results, strict=True):
            outcome.counts[str(result) if result != UpsertResult.STALE else "unchanged"] += 1
            demographics_changed |= entry.resource_type == "Patient" and result in (
                UpsertResult.CREATED,
                UpsertResult.UPDATED,
            )
        if demographics_changed:
            progress.at("upsert", [e for e in kept if e.resource_type == "Patient"])
            patient_demographics_refresh(patient=patient, asserted_by=system_actor)
    for entry in deletes:
        progress.at("remove", [entry])
        removed = entry_remove(
            source_org=organisation,
            resource_type=entry.resource_type,
            source_id=entry.source_id,
            as_of=as_of,
        )
        outcome.counts["deleted" if removed else "unchanged"] += 1
        if removed is not None and entry.resource_type == "Patient":
            # The registration and shown demographics may have hung off it.
            patient_lock(nhs_number=removed.nhs_number)
            patient_demographics_refresh(patient=removed, asserted_by=system_actor)
    return outcome


def feed_messages_sweep(*, older_than: datetime.timedelta) -> int:
    """Re-queue messages whose worker died (stuck PROCESSING) or whose task was lost.

    A PROCESSING message is stuck only if no session holds its processing
    lock: a live worker always does, so a slow message is never taken twice;
    its receipt then says the attempt ended with the worker lost.
    A message still RECEIVED after `older_than` was stored but its task never
    ran (for example Redis was down at commit), or its retry was lost; one
    waiting for a retry is left until `older_than` after its retry time.
    Side effects: a task for each.
    """
    cutoff = timezone.now() - older_than
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE ingestion_feedmessage m SET status = %s,
              failure = jsonb_build_object('stage', 'worker-lost', 'entries', '[]'::jsonb,
                'expression', '[]'::jsonb, 'error', '', 'attempt', m.attempts)
            WHERE m.status = %s AND m.started_at <= %s
              AND NOT EXISTS (
                  SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.classid = %s::int::oid
                    AND l.objid = (m.id %% 2147483647)::int::oid AND l.objsubid = 2)
            """,
            [MessageStatus.RECEIVED, MessageStatus.PROCESSING, cutoff, MESSAGE_LOCK_NAMESPACE],
        )
    waiting = list(
        FeedMessage.objects.filter(status=MessageStatus.RECEIVED, received_at__lte=cutoff)
        .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=cutoff))
        .values_list("pk", flat=True)
    )
    for pk in waiting:
        _enqueue(pk)
    return len(waiting)


@transaction.atomic
def feed_message_replay(*, message: FeedMessage, actor: AuditActor) -> bool:
    """Queue a FAILED message again from its first attempt, once its fault is fixed.

    Only a FAILED message is replayed (it still holds its payload); anything
    else is left alone and False returned.
    Side effects: one audit event naming `actor`; a task once this commits.
    """
    replayed = FeedMessage.objects.filter(pk=message.pk, status=MessageStatus.FAILED).update(
        status=MessageStatus.RECEIVED,
        attempts=0,
        failure={},
        retry_at=None,
        started_at=None,
        finished_at=None,
        counts={},
        issues=[],
    )
    if replayed != 1:
        return False
    audit_event_record(
        action=AuditAction.ADMIN_CHANGE,
        actor=actor,
        detail={
            "model": "ingestion.FeedMessage",
            "object": str(message.public_id),
            "change": "replayed",
        },
        source_ods=[message.organisation.ods_code],
    )
    transaction.on_commit(lambda: _enqueue_after_commit(message))
    return True


# ---------------------------------------------------------------- opt-out purge


def personal_data_purge(nhs_number: str) -> dict[str, int]:
    """Remove what ingestion holds for an opted-out person (called by the opt-out, locked).

    Parked matching-queue items that name the number, and the person's entries
    in raw messages still waiting to be processed or kept after failing (other
    people's entries in the same message are kept, so nothing else is lost).
    """
    parked = MatchQueueItem.objects.filter(
        Q(nhs_number_sent=nhs_number)
        | Q(resource__identifier__contains=[{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}])
    ).delete()[0]
    redacted = 0
    # Failed messages keep their payload for a replay, so they are purged like waiting ones.
    pending = FeedMessage.objects.select_for_update(skip_locked=True).filter(
        status__in=[MessageStatus.RECEIVED, MessageStatus.FAILED]
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
            message.issues, message.failure, message.retry_at = [], {}, None
            message.save(
                update_fields=[
                    "payload", "status", "finished_at", "counts", "issues", "failure", "retry_at"
                ]
            )  # fmt: skip
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
