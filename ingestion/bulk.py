"""Bulk FHIR: NDJSON files and Bundle files (feed_import) and NDJSON uploads, in batches.

Everything goes through the feeds' own pipeline: each batch of lines becomes a
collection Bundle for `parse_bundle` (the same validation and rules) and
`bundle_apply` (the same matching, parking, opt-out gate and upsert). What is
bulk-specific lives here: reading lines, screening each one on its own (a bad
line is an issue naming its line number, never its content), resolving
`Patient/<id>` references to people through the Patient resources this
source sent before (their NHS numbers, never a guess), per-file checkpoints,
and one audit event per batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.queues
import os
import queue
import signal
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from audit.models import AuditAction
from audit.trail import AuditActor, audit_event_record
from ingestion.applying import bundle_apply
from ingestion.bulk_worker import import_worker
from ingestion.credentials import feed_actor
from ingestion.fhir.bundle import parse_bundle
from ingestion.fhir.results import FeedRejected, ParsedBundle, PatientLink
from ingestion.models import (
    FeedCredential,
    FeedMessage,
    ImportCheckpoint,
    MatchQueueItem,
    MessageKind,
    MessageStatus,
)
from ingestion.progress import RECEIPT_COUNTS, Outcome, Progress
from ingestion.receiving import (
    bad_character_path,
    feed_message_refuse,
    feed_payload_check,
    json_depth,
)
from sharedrecord import fhirjson
from sharedrecord.access import organisation_is_pull_only, organisation_may_send_feeds
from sharedrecord.models import SourceKey
from sharedrecord.organisations import organisation_feed_seen
from sharedrecord.transactions import deadlock_retried

logger = logging.getLogger(__name__)

BATCH_LINES = 500
# A Bundle file read from disk has no HTTP limit; this only bounds one file's memory.
BUNDLE_FILE_MAX_ENTRIES = 1_000_000
NDJSON_SUFFIXES = (".ndjson", ".jsonl")
_BOM = b"\xef\xbb\xbf"


# ---------------------------------------------------------------- lines and batches


def ndjson_lines(stream: Iterable[bytes], *, after: int = 0) -> Iterator[tuple[int, bytes]]:
    """Each non-blank line after line `after`: (its 1-based number, its bytes without the end).

    A UTF-8 byte order mark on the first line is dropped; LF and CRLF both end a line.
    """
    for number, raw in enumerate(stream, start=1):
        if number <= after:
            continue
        text = raw.rstrip(b"\r\n")
        if number == 1:
            text = text.removeprefix(_BOM)
        if text.strip():
            yield number, text


def _line_issue(number: int, code: str, text: str, paths: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "entry": None,
        "line": number,
        "severity": "error",
        "code": code,
        "diagnostics": f"Line {number}: {text}",
        "expression": list(paths),
    }


def _screened(number: int, text: bytes) -> dict[str, Any]:
    """`{"resource": ...}` with the line's resource as JSON, or the issue that stops it.

    The same screening as a whole message gets at receipt: UTF-8, nesting
    depth, readable JSON, then no control character or lone surrogate in any
    string. A line is one resource, so it must be an object with a resourceType.
    """
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return _line_issue(number, "invalid-encoding", "The line is not UTF-8.")
    limit = settings.FEED_MAX_DEPTH
    if json_depth(decoded) > limit:
        return _line_issue(number, "too-deep", f"The resource nests more than {limit} levels deep.")
    try:
        document = fhirjson.loads(decoded)
    except ValueError:
        return _line_issue(number, "invalid-json", "The line is not one JSON object.")
    resource_type = document.get("resourceType") if isinstance(document, dict) else None
    if not isinstance(resource_type, str) or not resource_type:
        return _line_issue(
            number, "missing-resource", "The line is not a FHIR resource (no resourceType)."
        )
    path = bad_character_path(document, resource_type)
    if path is not None:
        return _line_issue(
            number,
            "invalid-character",
            "A string holds a control character or a lone surrogate; only tab, CR and LF "
            "are allowed.",
            [path],
        )
    return {"resource": document}


def _linked_by_source(bundle: ParsedBundle, source_org_id: int) -> ParsedBundle:
    """Resolve `Patient/<id>` references to the person this source's Patient <id> was filed to.

    One query for the whole batch. A reference to a Patient this source never
    sent (or one that was parked: no NHS number) keeps its source-id link, so
    the usual grouping parks the entry as unknown-patient: never a guess.
    """
    wanted = {
        e.patient.value for e in bundle.entries if e.patient and e.patient.kind == "source-id"
    }
    if not wanted:
        return bundle
    known = dict(
        SourceKey.objects.filter(
            source_org_id=source_org_id, resource_type="Patient", source_id__in=wanted
        ).values_list("source_id", "patient__nhs_number")
    )
    if not known:
        return bundle
    entries = tuple(
        replace(e, patient=PatientLink("nhs-number", known[e.patient.value]))
        if e.patient and e.patient.kind == "source-id" and e.patient.value in known
        else e
        for e in bundle.entries
    )
    return replace(bundle, entries=entries)


def ndjson_batch_apply(
    *, message: FeedMessage, lines: Sequence[tuple[int, bytes]], progress: Progress
) -> Outcome:
    """Screen, validate, match, gate and store one batch of NDJSON lines; issues name lines.

    Steps:
    1. Screen each line on its own; a bad one is an issue, the rest go on.
    2. Parse the good ones as one collection Bundle (parse_bundle: the feeds'
       validation and rules). A Patient in the batch links its entries directly.
    3. Link `Patient/<id>` references to Patients this source sent earlier.
    4. bundle_apply: the feeds' matching, parking, opt-out gate and upsert.
    5. Turn entry indexes back into line numbers (issues and parked items).
    The caller holds the transaction. Side effects: those of bundle_apply.
    """
    outcome = Outcome()
    screen_issues: list[dict[str, Any]] = []
    resources: list[dict[str, Any]] = []
    line_of: list[int] = []
    progress.at("parse")
    for number, text in lines:
        screened = _screened(number, text)
        if "resource" in screened:
            resources.append(screened["resource"])
            line_of.append(number)
        else:
            screen_issues.append(screened)
    outcome.counts["rejected"] += len(screen_issues)
    if resources:
        data = fhirjson.dumps(
            {"resourceType": "Bundle", "type": "collection", "entry": [
                {"resource": resource} for resource in resources
            ]}
        ).encode()  # fmt: skip
        parsed = parse_bundle(data, "json", max_entries=len(resources))
        parsed = _linked_by_source(parsed, message.organisation_id)
        applied = bundle_apply(
            message=message, bundle=parsed, organisation=message.organisation, progress=progress
        )
        outcome.counts.update(applied.counts)
        for item in applied.issues:
            index = item.get("entry")
            if index is None:
                outcome.issues.append(item)
                continue
            number = line_of[index]
            diagnostics = f"Line {number}: {item['diagnostics']}"
            outcome.issues.append(
                item | {"entry": None, "line": number, "diagnostics": diagnostics}
            )
        if applied.counts.get("parked"):
            parked = list(MatchQueueItem.objects.filter(message=message).only("entry_index"))
            for row in parked:
                row.entry_index = line_of[row.entry_index]
            MatchQueueItem.objects.bulk_update(parked, ["entry_index"])
    outcome.issues.extend(screen_issues)
    outcome.issues.sort(key=lambda item: item.get("line") or 0)
    return outcome


def _parked_by_reason(message: FeedMessage) -> dict[str, int]:
    return dict(
        MatchQueueItem.objects.filter(message=message)
        .values_list("reason")
        .annotate(n=Count("id"))
        .values_list("reason", "n")
    )


# ---------------------------------------------------------------- NDJSON over HTTP


def ndjson_upload_check(payload: bytes) -> int:
    """Check an NDJSON upload at receipt; return how many resources (non-blank lines) it holds.

    Refuses (FeedRejected) what the worker could not read at all: not UTF-8,
    no lines, more lines than FEED_MAX_ENTRIES. A bad line is not refused
    here: the worker reports it on the receipt by line number.
    """
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FeedRejected("invalid-encoding", "The upload is not UTF-8.", path="") from exc
    count = sum(1 for _ in ndjson_lines(payload.splitlines(keepends=True)))
    if count == 0:
        raise FeedRejected("empty-upload", "The upload holds no resources (one a line).", path="")
    if count > settings.FEED_MAX_ENTRIES:
        raise FeedRejected(
            "too-many-entries",
            f"The upload holds more than {settings.FEED_MAX_ENTRIES} resources. Split it.",
            status=413,
            path="",
        )
    return count


def ndjson_message_finish(*, message: FeedMessage, actor: AuditActor, progress: Progress) -> str:
    """Process a stored NDJSON upload (the worker calls it for kind fhir-ndjson); return DONE.

    The upload is one batch (at most FEED_MAX_ENTRIES lines), so its resources
    find the upload's own Patients whatever the line order, and Patients this
    source sent earlier through their ids. The caller holds the transaction and the message's
    lock, as for a Bundle. Side effects: entries, parked items, the receipt
    and one feed-processed audit event.
    """
    lines = list(ndjson_lines(bytes(message.payload).splitlines(keepends=True)))
    outcome = ndjson_batch_apply(message=message, lines=lines, progress=progress)
    progress.at("receipt")
    message.status = MessageStatus.DONE
    message.finished_at = timezone.now()
    message.counts = {k: outcome.counts.get(k, 0) for k in RECEIPT_COUNTS}
    message.issues = outcome.issues
    message.payload = b""
    message.failure = {}
    message.save(update_fields=["status", "finished_at", "counts", "issues", "payload", "failure"])
    audit_event_record(
        action=AuditAction.FEED_PROCESSED,
        actor=actor,
        detail={"message": str(message.public_id), "counts": message.counts},
        source_ods=[message.organisation.ods_code],
    )
    org_id = message.organisation_id
    transaction.on_commit(lambda: organisation_feed_seen(organisation_id=org_id))
    logger.info("feed message %s done: %s", message.public_id, message.counts)
    return MessageStatus.DONE


# ---------------------------------------------------------------- files (feed_import)


@dataclass(frozen=True)
class ImportFile:
    """One file to import: what it is, its checksum, how many lines, its first resource type."""

    path: Path
    kind: Literal["ndjson", "bundle"]
    sha256: str
    lines: int
    resource_type: str

    @property
    def order(self) -> tuple[int, str]:
        """Patients first (every other line refers to one), then other NDJSON, then Bundles."""
        if self.kind == "bundle":
            return (2, str(self.path))
        return (0 if self.resource_type == "Patient" else 1, str(self.path))


def import_paths_expand(paths: Iterable[Path]) -> list[Path]:
    """The files named, and in each directory named its *.ndjson, *.jsonl and *.json files."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.iterdir()
                    if p.is_file() and p.suffix in {*NDJSON_SUFFIXES, ".json"}
                )
            )
        else:
            found.append(path)
    return found


def import_file_survey(path: Path) -> ImportFile:
    """Read a file once: its SHA-256, its line count and its first line's resource type."""
    digest = hashlib.sha256()
    lines = 0
    last = b"\n"
    first_line = b""
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            if not first_line:
                first_line = chunk.split(b"\n", 1)[0]
            digest.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    kind: Literal["ndjson", "bundle"] = "ndjson" if path.suffix in NDJSON_SUFFIXES else "bundle"
    resource_type = ""
    if kind == "ndjson":
        try:
            first = json.loads(first_line.removeprefix(_BOM) or b"{}")
            resource_type = str(first.get("resourceType", "")) if isinstance(first, dict) else ""
        except ValueError:
            resource_type = ""
    return ImportFile(
        path, kind, digest.hexdigest(), lines if kind == "ndjson" else 1, resource_type
    )


def import_checkpoint_open(
    *, credential: FeedCredential, file: ImportFile, restart: bool = False
) -> ImportCheckpoint:
    """The checkpoint of this file's import by this system: where a new run starts or resumes.

    With `restart`, the file starts again from its first line, finished or not
    (what it stored stays: the upsert makes the second pass store nothing twice).
    Side effects: creates it on first use; `restart` clears its progress.
    """
    checkpoint, created = ImportCheckpoint.objects.get_or_create(
        organisation=credential.organisation,
        system=credential.system,
        file_sha256=file.sha256,
        defaults={"file_name": file.path.name[:255], "total_lines": file.lines},
    )
    if restart and not created:
        checkpoint.lines_done, checkpoint.finished_at = 0, None
        checkpoint.counts, checkpoint.problems, checkpoint.parked = {}, [], {}
        checkpoint.public_id = uuid.uuid4()  # a new pass: its batches are new messages
        checkpoint.save()
    return checkpoint


class ImportConflict(Exception):
    """Another run moved this file's checkpoint: two imports of one file at once."""


@dataclass
class BatchResult:
    lines_done: int
    entries: int
    outcome: Outcome


@deadlock_retried
def import_batch_commit(
    *,
    checkpoint: ImportCheckpoint,
    credential: FeedCredential,
    file: ImportFile,
    lines: Sequence[tuple[int, bytes]],
    last_line: int,
) -> BatchResult:
    """Apply one batch and move the file's checkpoint past it, in one transaction.

    Either the batch's entries, its parked items, its FeedMessage (the batch's
    receipt), its audit event and the new checkpoint all commit, or none do:
    a crash or a kill at any moment repeats or loses nothing; a batch ended by
    a deadlock with another import process (each holds one person's lock and
    wants the other's, or an audit stripe) runs again. Refuses
    (FeedRejected, audited as a refused feed) when the organisation's agreement
    is no longer active, and
    (ImportConflict) when another run has moved the checkpoint meanwhile.
    Side effects: one audit event (counts, file, lines) per batch, plus those
    of the feeds' matching (one match decision per person in the batch).
    """
    organisation = credential.organisation
    kind = MessageKind.FHIR_NDJSON if file.kind == "ndjson" else MessageKind.FHIR_JSON
    pull_only = organisation_is_pull_only(organisation)
    if not organisation_may_send_feeds(organisation) or pull_only:
        rejected = FeedRejected(
            "pull-only" if pull_only else "agreement-inactive",
            "The organisation is configured as pull-only."
            if pull_only
            else "The organisation has no active data sharing agreement.",
            status=403,
        )
        feed_message_refuse(
            credential=credential,
            kind=kind,
            code=rejected.code,
            location=f"{checkpoint.file_name} line {checkpoint.lines_done + 1}",
            reason=rejected.message,
        )
        raise rejected
    with transaction.atomic():
        locked = ImportCheckpoint.objects.select_for_update().get(pk=checkpoint.pk)
        if locked.lines_done != checkpoint.lines_done:
            raise ImportConflict
        first = lines[0][0] if lines else last_line
        body = b"\n".join(text for _, text in lines)
        message = FeedMessage.objects.create(
            organisation=organisation,
            credential=credential,
            kind=kind,
            idempotency_key=f"import:{locked.public_id}:{first}",
            payload=b"",
            payload_sha256=hashlib.sha256(body).hexdigest(),
            payload_bytes=len(body),
            entry_count=len(lines),
            status=MessageStatus.PROCESSING,
            started_at=timezone.now(),
            attempts=1,
        )
        progress = Progress()
        if file.kind == "ndjson":
            outcome = ndjson_batch_apply(message=message, lines=lines, progress=progress)
        else:
            outcome = _bundle_file_apply(message=message, data=body)
        message.status = MessageStatus.DONE
        message.finished_at = timezone.now()
        message.counts = {k: outcome.counts.get(k, 0) for k in RECEIPT_COUNTS}
        message.issues = outcome.issues
        message.save(update_fields=["status", "finished_at", "counts", "issues"])
        _checkpoint_advance(locked, message, outcome, last_line)
        audit_event_record(
            action=AuditAction.FEED_PROCESSED,
            actor=feed_actor(credential),
            detail={
                "message": str(message.public_id),
                "import": str(locked.public_id),
                "file": locked.file_name,
                "lines": [first, last_line],
                "counts": message.counts,
            },
            source_ods=[organisation.ods_code],
        )
        org_id = organisation.pk
        transaction.on_commit(lambda: organisation_feed_seen(organisation_id=org_id))
    checkpoint.refresh_from_db()
    return BatchResult(lines_done=last_line, entries=len(lines), outcome=outcome)


def _bundle_file_apply(*, message: FeedMessage, data: bytes) -> Outcome:
    """A Bundle file: screened and parsed as a feed message is; a bad file is one issue."""
    progress = Progress("parse")
    try:
        feed_payload_check(data, "json")
        bundle = parse_bundle(data, "json", max_entries=BUNDLE_FILE_MAX_ENTRIES)
    except FeedRejected as rejected:
        outcome = Outcome()
        outcome.counts["rejected"] += 1
        outcome.issues.append({
            "entry": None, "severity": "error", "code": rejected.code,
            "diagnostics": rejected.message, "expression": [rejected.path] if rejected.path else [],
        })  # fmt: skip
        return outcome
    return bundle_apply(
        message=message, bundle=bundle, organisation=message.organisation, progress=progress
    )


def _checkpoint_advance(
    checkpoint: ImportCheckpoint, message: FeedMessage, outcome: Outcome, last_line: int
) -> None:
    counts = Counter(checkpoint.counts)
    counts.update({k: v for k, v in outcome.counts.items() if v})
    checkpoint.counts = dict(counts)
    room = ImportCheckpoint.PROBLEMS_KEPT - len(checkpoint.problems)
    errors = [item for item in outcome.issues if item["severity"] == "error"]
    checkpoint.problems = checkpoint.problems + [
        {"line": item.get("line"), "entry": item.get("entry"), "code": item["code"]}
        for item in errors[: max(room, 0)]
    ]
    if outcome.counts.get("parked"):
        parked = Counter(checkpoint.parked)
        parked.update(_parked_by_reason(message))
        checkpoint.parked = dict(parked)
    checkpoint.lines_done = last_line
    if last_line >= checkpoint.total_lines:
        checkpoint.finished_at = timezone.now()
    checkpoint.save(
        update_fields=["counts", "problems", "parked", "lines_done", "finished_at", "updated_at"]
    )


def import_checkpoint_finish(*, checkpoint: ImportCheckpoint) -> None:
    """Mark a file done once only blank lines were left after its last batch."""
    ImportCheckpoint.objects.filter(pk=checkpoint.pk, lines_done=checkpoint.lines_done).update(
        lines_done=checkpoint.total_lines, finished_at=timezone.now()
    )
    checkpoint.refresh_from_db()


@dataclass
class FileReport:
    """What happened to one file, over every run that worked on it."""

    file: ImportFile
    checkpoint: ImportCheckpoint
    already_done: bool = False


@dataclass
class ImportRun:
    """A feed_import run: its files in order, what each got to, and whether it was stopped."""

    files: list[FileReport] = field(default_factory=list)
    stopped_at: tuple[str, int] | None = None


def feed_import_run(
    *,
    credential: FeedCredential,
    files: Sequence[ImportFile],
    batch_lines: int = BATCH_LINES,
    on_batch: Callable[[ImportFile, int], None] = lambda file, lines: None,
    should_stop: Callable[[], bool] = lambda: False,
    restart: bool = False,
    jobs: int = 1,
) -> ImportRun:
    """Import files in order (Patients first), batch by batch, resuming each at its checkpoint.

    Checks `should_stop` between batches only, so a stop always lands on a
    committed checkpoint. `on_batch` hears of each batch (file, lines moved
    past) for a progress display. A file already finished is passed over
    (unless `restart`: see import_checkpoint_open). With `jobs` above 1, the
    Patient files are imported first in this process, then the other files
    by `jobs` processes, each taking the next file (largest first) when it
    finishes one.
    Side effects: those of import_batch_commit, per batch.
    """
    ordered = sorted(files, key=lambda f: f.order)
    patients = [f for f in ordered if f.order[0] == 0]
    others = [f for f in ordered if f.order[0] != 0]
    if jobs <= 1 or len(others) <= 1:
        return import_files(
            credential=credential, files=ordered, batch_lines=batch_lines,
            on_batch=on_batch, should_stop=should_stop, restart=restart,
        )  # fmt: skip
    run = import_files(
        credential=credential, files=patients, batch_lines=batch_lines,
        on_batch=on_batch, should_stop=should_stop, restart=restart,
    )  # fmt: skip
    if run.stopped_at is None:
        rest = _import_parallel(
            credential, others, jobs, batch_lines, on_batch, should_stop, restart
        )
        run.files.extend(rest.files)
        run.stopped_at = rest.stopped_at
    return run


def import_files(
    *,
    credential: FeedCredential,
    files: Sequence[ImportFile],
    batch_lines: int,
    on_batch: Callable[[ImportFile, int], None],
    should_stop: Callable[[], bool],
    restart: bool,
) -> ImportRun:
    """Import `files` in the order given, in this process (see feed_import_run).

    Side effects: those of import_batch_commit, per batch.
    """
    run = ImportRun()
    for file in files:
        checkpoint = import_checkpoint_open(credential=credential, file=file, restart=restart)
        report = FileReport(file, checkpoint, already_done=checkpoint.finished_at is not None)
        run.files.append(report)
        if report.already_done:
            on_batch(file, file.lines)
            continue
        if checkpoint.lines_done:
            on_batch(file, checkpoint.lines_done)
        for batch, last_line in _batches(file, checkpoint.lines_done, batch_lines):
            if should_stop():
                run.stopped_at = (file.path.name, checkpoint.lines_done)
                return run
            done_before = checkpoint.lines_done
            import_batch_commit(
                checkpoint=checkpoint,
                credential=credential,
                file=file,
                lines=batch,
                last_line=last_line,
            )
            on_batch(file, last_line - done_before)
        if checkpoint.finished_at is None:
            left = checkpoint.total_lines - checkpoint.lines_done
            import_checkpoint_finish(checkpoint=checkpoint)
            on_batch(file, left)
    return run


def _import_parallel(
    credential: FeedCredential,
    files: Sequence[ImportFile],
    jobs: int,
    batch_lines: int,
    on_batch: Callable[[ImportFile, int], None],
    should_stop: Callable[[], bool],
    restart: bool,
) -> ImportRun:
    """Import `files` in `jobs` new processes; this process relays progress and stops.

    Each process takes the next file from a shared counter, so a file is
    imported by exactly one process. A stop request (this process's
    `should_stop`) is passed on as SIGTERM: each process stops at its next
    batch boundary. A process's error stops the import once all have ended.
    """
    largest_first = sorted(files, key=lambda f: -f.path.stat().st_size)
    # Spawned, not forked: a forked child would share this process's pooled
    # database connections (their sockets) with it.
    context = multiprocessing.get_context("spawn")
    events: multiprocessing.queues.Queue[tuple[str, int, Any]] = context.Queue()
    next_file = context.Value("i", 0)
    workers = [
        context.Process(
            target=import_worker,
            args=(
                credential.pk,
                [dataclasses.astuple(f) for f in largest_first],
                next_file,
                events,
                batch_lines,
                restart,
            ),
        )
        for _ in range(min(jobs, len(files)))
    ]
    for worker in workers:
        worker.start()
    run = ImportRun()
    errors: list[tuple[str, str, str]] = []
    ended = 0
    stopping = False
    while ended < len(workers):
        if should_stop() and not stopping:
            stopping = True
            for worker in workers:
                if worker.is_alive() and worker.pid is not None:
                    os.kill(worker.pid, signal.SIGTERM)
        try:
            kind, index, value = events.get(timeout=0.2)
        except queue.Empty:
            if not any(worker.is_alive() for worker in workers) and events.empty():
                break  # a process died without a word (killed): its checkpoints still hold
            continue
        if kind == "batch":
            on_batch(largest_first[index], value)
        elif kind == "stopped":
            run.stopped_at = (largest_first[index].path.name, value)
        elif kind == "error":
            errors.append(value)
        elif kind == "ended":
            ended += 1
    for worker in workers:
        worker.join()
    for file in files:
        checkpoint = ImportCheckpoint.objects.filter(
            organisation=credential.organisation, system=credential.system, file_sha256=file.sha256
        ).first()
        if checkpoint is not None:
            run.files.append(FileReport(file, checkpoint))
    if errors:
        kind, code, text = errors[0]
        if kind == "rejected":
            raise FeedRejected(code, text, status=403)
        if kind == "conflict":
            raise ImportConflict
        raise RuntimeError(f"An import process failed ({code}); run the command again.")
    if run.stopped_at is None and any(
        r.checkpoint.finished_at is None for r in run.files
    ):  # fmt: skip
        unfinished = next(r for r in run.files if r.checkpoint.finished_at is None)
        run.stopped_at = (unfinished.file.path.name, unfinished.checkpoint.lines_done)
    return run


def _batches(
    file: ImportFile, after: int, size: int
) -> Iterator[tuple[list[tuple[int, bytes]], int]]:
    """The file's batches after line `after`: (lines, the last line number each covers)."""
    with file.path.open("rb") as stream:
        if file.kind == "bundle":
            if after < 1:
                yield [(1, stream.read())], 1
            return
        yield from _ndjson_batches(stream, after, size)


def _ndjson_batches(
    stream: IO[bytes], after: int, size: int
) -> Iterator[tuple[list[tuple[int, bytes]], int]]:
    batch: list[tuple[int, bytes]] = []
    for number, text in ndjson_lines(stream, after=after):
        batch.append((number, text))
        if len(batch) >= size:
            yield batch, number
            batch = []
    if batch:
        yield batch, batch[-1][0]
