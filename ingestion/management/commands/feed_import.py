"""Onboard an organisation's history: FHIR NDJSON and Bundle files through the feed pipeline."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Sum
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ingestion.bulk import (
    BATCH_LINES,
    ImportConflict,
    ImportFile,
    ImportRun,
    feed_import_run,
    import_file_survey,
    import_paths_expand,
)
from ingestion.fhir.results import FeedRejected
from ingestion.models import FeedCredential, ImportCheckpoint
from sharedrecord.models import Organisation

STORED = ("created", "updated", "unchanged")


def progress_wanted(*, no_progress: bool, stream: Any) -> bool:
    """A progress bar only for a person at a terminal: never with --no-progress, in CI or a pipe."""
    if no_progress or os.environ.get("CI", "").lower() not in {"", "0", "false"}:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Command(BaseCommand):
    help = (
        "Import an organisation's history: FHIR NDJSON files (one resource a line, as FHIR "
        "Bulk Data exports them) and Bundle files (*.json), or directories of them, through "
        "the feeds' validation, matching, opt-out gate and upsert. Patient files go first. "
        "Resumable: run the same command again after a crash or Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="the sending organisation's ODS code")
        parser.add_argument(
            "--system",
            required=True,
            help="the sending system's name: a live feed credential of the organisation's",
        )
        parser.add_argument(
            "paths", nargs="+", type=Path, help="NDJSON or Bundle files, or folders"
        )
        parser.add_argument(
            "--batch-size", type=int, default=BATCH_LINES, help="lines per batch (one commit each)"
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=1,
            help="processes importing the files after the Patient files, one file each at a "
            "time (more than the cores PostgreSQL leaves free does not help)",
        )
        parser.add_argument(
            "--restart",
            action="store_true",
            help="import the files again from their first line, even those finished "
            "(for example once people parked for want of an NHS number are known)",
        )
        parser.add_argument(
            "--no-progress",
            action="store_true",
            help="no progress bar (off anyway when not at a terminal or when CI is set)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        credential = self._credential(options["org"], options["system"])
        paths = import_paths_expand(options["paths"])
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise CommandError(f"No such file: {', '.join(missing)}")
        if options["batch_size"] < 1 or options["jobs"] < 1:
            raise CommandError("--batch-size and --jobs must be at least 1.")
        files = [import_file_survey(path) for path in paths]
        done_before = 0 if options["restart"] else _lines_done(credential, files)
        stop = _StopSignal()
        started = time.monotonic()
        with stop.installed():
            try:
                if progress_wanted(no_progress=options["no_progress"], stream=sys.stderr):
                    run = self._run_with_bar(credential, files, options, stop)
                else:
                    run = feed_import_run(
                        credential=credential,
                        files=files,
                        batch_lines=options["batch_size"],
                        should_stop=stop.requested,
                        restart=options["restart"],
                        jobs=options["jobs"],
                    )
            except FeedRejected as rejected:
                raise CommandError(f"Stopped: {rejected.message}") from None
            except ImportConflict:
                raise CommandError(
                    "Another feed_import is working on the same file; let it finish."
                ) from None
        self._report(run, _lines_done(credential, files) - done_before, time.monotonic() - started)
        if run.stopped_at is not None:
            name, line = run.stopped_at
            self.stderr.write(
                f"Stopped at {name} after line {line}, with everything before it saved. "
                "Run the same command again to carry on."
            )
            sys.exit(128 + (stop.signum or signal.SIGINT))

    def _credential(self, ods: str, system: str) -> FeedCredential:
        organisation = Organisation.objects.filter(ods_code=ods.upper()).first()
        if organisation is None:
            raise CommandError(f"No organisation with ODS code {ods}.")
        credential = (
            FeedCredential.objects.select_related("organisation")
            .filter(organisation=organisation, system=system, revoked_at__isnull=True)
            .order_by("-created_at")
            .first()
        )
        if credential is None:
            raise CommandError(
                f"{organisation.ods_code} has no live feed credential for the system {system!r}: "
                "the import speaks as that system, as its feed does. Issue one with "
                "feed_credential_issue first."
            )
        return credential

    def _run_with_bar(
        self,
        credential: FeedCredential,
        files: list[ImportFile],
        options: dict[str, Any],
        stop: _StopSignal,
    ) -> ImportRun:
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]} lines/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
            task = bar.add_task("importing", total=sum(f.lines for f in files), rate="-")

            def on_batch(file: ImportFile, lines: int) -> None:
                bar.update(task, advance=lines, description=file.path.name)
                speed = bar.tasks[task].speed
                bar.update(task, rate=f"{speed:,.0f}" if speed else "-")

            return feed_import_run(
                credential=credential,
                files=files,
                batch_lines=options["batch_size"],
                on_batch=on_batch,
                should_stop=stop.requested,
                restart=options["restart"],
                jobs=options["jobs"],
            )

    def _report(self, run: ImportRun, lines: int, seconds: float) -> None:
        total: Counter[str] = Counter()
        parked: Counter[str] = Counter()
        rejected: dict[str, list[str]] = {}
        out = self.stdout.write
        out("Import report")
        for report in run.files:
            checkpoint = report.checkpoint
            counts = Counter(checkpoint.counts)
            total.update(counts)
            parked.update(checkpoint.parked)
            state = "already imported" if report.already_done else (
                "done" if checkpoint.finished_at else f"stopped after line {checkpoint.lines_done}"
            )  # fmt: skip
            out(
                f"  {report.file.path.name}: {state}; stored {sum(counts[k] for k in STORED)}, "
                f"rejected {counts['rejected']}, parked {counts['parked']}, "
                f"blocked by opt-out {counts['blocked']}"
            )
            for code, where in _problem_places(checkpoint.problems).items():
                rejected.setdefault(code, []).append(f"{report.file.path.name} {where}")
        stored = sum(total[k] for k in STORED)
        out(
            f"Stored {stored} (created {total['created']}, updated {total['updated']}, "
            f"unchanged {total['unchanged']}), deleted {total['deleted']}, "
            f"rejected {total['rejected']}, parked {total['parked']}, "
            f"blocked by opt-out {total['blocked']}"
        )
        if rejected:
            out("Rejected, by reason (file and line; entry for a Bundle file):")
            for code, places in sorted(rejected.items()):
                out(f"  {code}: " + "; ".join(places))
            listed = sum(len(r.checkpoint.problems) for r in run.files)
            if total["rejected"] > listed:
                out(
                    f"  ({total['rejected'] - listed} more rejections are counted but not "
                    "listed: each batch's receipt (feed message) names them)"
                )
        if parked:
            out("Parked for review (matching queue), by reason:")
            for reason, n in parked.most_common():
                out(f"  {reason}: {n}")
        if seconds > 0:
            out(f"This run: {lines} lines in {seconds:.1f} s ({lines / seconds:,.0f} lines/s)")


def _lines_done(credential: FeedCredential, files: list[ImportFile]) -> int:
    """Lines the files' checkpoints have passed, over every run so far."""
    done = ImportCheckpoint.objects.filter(
        organisation=credential.organisation,
        system=credential.system,
        file_sha256__in=[f.sha256 for f in files],
    ).aggregate(n=Sum("lines_done"))["n"]
    return int(done or 0)


def _problem_places(problems: list[dict[str, Any]]) -> dict[str, str]:
    """Each reason's places in one file, lines as ranges: "lines 1-7, 12"."""
    lines: dict[str, list[int]] = {}
    others: dict[str, list[str]] = {}
    for problem in problems:
        code = problem["code"]
        if problem.get("line") is not None:
            lines.setdefault(code, []).append(int(problem["line"]))
        elif problem.get("entry") is not None:
            others.setdefault(code, []).append(f"entry {problem['entry']}")
        else:
            others.setdefault(code, []).append("the whole file")
    places: dict[str, str] = {}
    for code, numbers in lines.items():
        ranges: list[str] = []
        for n in sorted(set(numbers)):
            if ranges and ranges[-1].split("-")[-1] == str(n - 1):
                ranges[-1] = f"{ranges[-1].split('-')[0]}-{n}"
            else:
                ranges.append(str(n))
        places[code] = ("line " if ranges == [str(numbers[0])] else "lines ") + ", ".join(ranges)
    for code, where in others.items():
        places[code] = ", ".join([places[code], *where] if code in places else where)
    return places


class _StopSignal:
    """SIGINT and SIGTERM ask the import to stop at the next batch boundary."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Catch both signals while the import runs; put the previous handlers back after."""
        previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
