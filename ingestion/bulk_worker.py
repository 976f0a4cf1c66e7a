"""One feed_import process of `--jobs`: started fresh (spawned), so it loads Django itself.

Nothing here is imported at module level beyond the standard library: the
process unpickles its target before Django is set up.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any


def import_worker(
    credential_pk: int,
    files: list[tuple[Any, ...]],
    next_file: Any,
    events: Any,
    batch_lines: int,
    restart: bool,
) -> None:
    """Take files from the shared counter and import each, until none are left or told to stop.

    `files` are ImportFile fields as tuples (largest first). Reports each batch,
    a stop and errors (their class and our code, never their text: database
    errors may quote values) on `events`, then "ended". SIGINT and SIGTERM stop
    it at its next batch boundary.
    """
    stop: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    import django

    django.setup()
    from django.db import connections

    from ingestion.bulk import ImportConflict, ImportFile, import_files
    from ingestion.fhir.results import FeedRejected
    from ingestion.models import FeedCredential

    try:
        credential = FeedCredential.objects.select_related("organisation").get(pk=credential_pk)
        while not stop:
            with next_file.get_lock():
                index = next_file.value
                next_file.value += 1
            if index >= len(files):
                break
            path, *rest = files[index]
            file = ImportFile(Path(path), *rest)

            def relay(file: ImportFile, lines: int, index: int = index) -> None:
                events.put(("batch", index, lines))

            run = import_files(
                credential=credential,
                files=[file],
                batch_lines=batch_lines,
                on_batch=relay,
                should_stop=lambda: bool(stop),
                restart=restart,
            )
            if run.stopped_at is not None:
                events.put(("stopped", index, run.stopped_at[1]))
                break
    except FeedRejected as rejected:
        events.put(("error", -1, ("rejected", rejected.code, rejected.message)))
    except ImportConflict:
        events.put(("error", -1, ("conflict", "", "")))
    except Exception as exc:  # reported by class only; the parent stops the import
        events.put(("error", -1, ("failed", type(exc).__name__, "")))
    finally:
        connections.close_all()
        events.put(("ended", -1, None))
