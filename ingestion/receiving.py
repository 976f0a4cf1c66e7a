"""Receiving a FHIR message: screening at receipt, the envelope, refusing, storing and queueing."""

from __future__ import annotations

import array
import hashlib
import itertools
import json
import logging
import re
import sys
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from kombu.exceptions import KombuError
from lxml import etree
from redis.exceptions import RedisError

from audit.models import AuditAction, AuditOutcome
from audit.trail import audit_event_record
from ingestion.credentials import feed_actor
from ingestion.fhir.envelope import read_envelope
from ingestion.fhir.results import Envelope, FeedRejected
from ingestion.models import FeedCredential, FeedMessage, MessageKind
from sharedrecord.access import organisation_is_pull_only, organisation_may_send_feeds
from sharedrecord.models import Organisation

logger = logging.getLogger(__name__)


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


def feed_agreement_check(*, organisation: Organisation) -> None:
    """Refuse a FHIR message from an organisation without an active data sharing agreement.

    Raises FeedRejected (403, agreement-inactive); nothing is stored or audited here
    (the caller refuses the message). No side effects.
    """
    if not organisation_may_send_feeds(organisation):
        raise FeedRejected(
            "agreement-inactive",
            "Your organisation has no active data sharing agreement.",
            status=403,
            path="",
        )
    if organisation_is_pull_only(organisation):
        raise FeedRejected(
            "pull-only",
            "Your organisation is configured as pull-only: it is asked live, and sends no feeds.",
            status=403,
            path="",
        )


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
                transaction.on_commit(lambda: enqueue_after_commit(message=message))
            return Received(message, duplicate=False)
        except IntegrityError:
            # A concurrent delivery of the same message won the insert.
            existing = FeedMessage.objects.get(organisation=organisation, idempotency_key=key)
    if existing.payload_sha256 != digest:
        raise IdempotencyConflict
    return Received(existing, duplicate=True)


def feed_queue(*, entry_count: int) -> str:
    """The queue a message is processed from: large messages have their own, and workers.

    HL7 v2 and small messages go to the Celery app's default queue (CELERY_QUEUE).
    """
    from ingestion.tasks import feed_message_process_task

    default = str(feed_message_process_task.app.conf.task_default_queue)
    if entry_count <= settings.FEED_LARGE_ENTRIES:
        return default
    return str(settings.FEED_LARGE_QUEUE or f"{default}-large")


def enqueue(*, message_pk: int, entry_count: int = 0) -> None:
    """Queue processing with Celery's usual publish retries (the sweep and other workers)."""
    from ingestion.tasks import feed_message_process_task

    feed_message_process_task.apply_async((message_pk,), queue=feed_queue(entry_count=entry_count))


BROKER_ERRORS = (KombuError, RedisError, OSError)


def enqueue_after_commit(*, message: FeedMessage) -> None:
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
            feed_message_process_task.apply_async(
                (message.pk,),
                retry=False,
                producer=producer,
                queue=feed_queue(entry_count=message.entry_count),
            )
    except BROKER_ERRORS as exc:
        logger.warning(
            "feed message %s stored; queueing it failed (%s), the sweep will queue it",
            message.public_id,
            type(exc).__name__,
        )


def media_of(kind: str) -> Literal["json", "xml"]:
    """The FHIR media a stored message of this kind is read as (HL7 v2 converts to JSON)."""
    return "xml" if kind == MessageKind.FHIR_XML else "json"
