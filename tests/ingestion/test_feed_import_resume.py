"""feed_import as a real process: killed (SIGKILL) or stopped (SIGINT) mid-import, then resumed.

Nothing is applied twice and nothing is lost: the rows and counts of an
interrupted and resumed import equal those of an uninterrupted one, and the
batches' audit events cover every line exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db.models import Sum

from audit.models import AuditAction, AuditEvent
from ingestion.models import ImportCheckpoint
from sharedrecord.models import Entry, Organisation
from tests.factories import BASE_DIR, make_credential, make_organisation, next_nhs_number
from tests.ingestion.test_feed_import import LINES, bulk_copy
from tests.services import database_url

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
HELD = sum(n for name, n in LINES.items() if name != "Device")


def feed_import(ods: str, folder: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url(settings.DATABASES["default"])}
    return subprocess.Popen(
        [sys.executable, "manage.py", "feed_import", "--org", ods, "--system", "EPR",
         str(folder), *extra],
        cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def lines_done(organisation: Organisation) -> int:
    total = ImportCheckpoint.objects.filter(organisation=organisation).aggregate(
        n=Sum("lines_done")
    )["n"]
    return int(total or 0)


def wait_for_progress(
    organisation: Organisation, lines: int, proc: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 120
    while lines_done(organisation) < lines:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def rows(organisation: Organisation) -> Counter[tuple[str, str, str, str]]:
    return Counter(
        Entry.objects.filter(source_org=organisation).values_list(
            "resource_type", "source_id", "content_hash", "patient__nhs_number"
        )
    )


def counts(organisation: Organisation) -> Counter[str]:
    total: Counter[str] = Counter()
    for checkpoint in ImportCheckpoint.objects.filter(organisation=organisation):
        total.update(checkpoint.counts)
    return total


def audited_lines(organisation: Organisation) -> dict[str, list[int]]:
    """Every line each file's batch events cover, in order (a repeat would show twice)."""
    covered: dict[str, list[int]] = {}
    # The trail outlives each test's flush (append-only), so only this test's imports count.
    imports = [
        str(i)
        for i in ImportCheckpoint.objects.filter(organisation=organisation).values_list(
            "public_id", flat=True
        )
    ]
    for event in AuditEvent.objects.filter(
        action=AuditAction.FEED_PROCESSED, detail__import__in=imports
    ).order_by("id"):
        first, last = event.detail["lines"]
        covered.setdefault(event.detail["file"], []).extend(range(first, last + 1))
    return covered


@pytest.fixture
def two_importers(tmp_path: Path) -> tuple[Organisation, Organisation, Path]:
    folder = tmp_path / "export"
    bulk_copy(folder, [next_nhs_number() for _ in range(7)])
    organisations = []
    for ods in ("ZAC93", "ZAC94"):
        organisation = make_organisation(ods_code=ods, kind="acute")
        make_credential(organisation)
        organisations.append(organisation)
    return organisations[0], organisations[1], folder


def test_an_import_killed_mid_batch_resumes_with_nothing_twice_and_nothing_lost(
    two_importers: tuple[Organisation, Organisation, Path],
) -> None:
    straight, killed, folder = two_importers
    # The yardstick: the same files imported without interruption.
    done = feed_import(straight.ods_code, folder, "--batch-size", "50")
    assert done.wait(timeout=300) == 0, done.communicate()

    proc = feed_import(killed.ods_code, folder, "--batch-size", "3")
    wait_for_progress(killed, 60, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    partial = lines_done(killed)
    assert 60 <= partial < sum(LINES.values()), "the kill must land mid-import"
    assert ImportCheckpoint.objects.filter(organisation=killed, finished_at__isnull=True).exists()

    resumed = feed_import(killed.ods_code, folder, "--batch-size", "7")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err

    assert rows(killed) == rows(straight)
    assert sum(rows(killed).values()) == HELD
    assert counts(killed) == counts(straight)
    assert counts(killed)["created"] == HELD
    assert counts(killed)["unchanged"] == 0  # no batch applied twice
    for file, covered in audited_lines(killed).items():
        assert covered == list(range(1, len(covered) + 1)), file
    assert {f: len(c) for f, c in audited_lines(killed).items()} == {
        f"{name}.000.ndjson": n for name, n in LINES.items()
    }
    # The resumed run's report sums both runs' work.
    assert f"Stored {HELD} (created {HELD}, updated 0, unchanged 0)".encode() in out


@pytest.mark.parametrize(
    ("signum", "jobs"), [(signal.SIGINT, "1"), (signal.SIGTERM, "1"), (signal.SIGTERM, "2")]
)
def test_a_stop_signal_ends_the_import_at_a_batch_boundary_with_the_checkpoint_saved(
    two_importers: tuple[Organisation, Organisation, Path], signum: int, jobs: str
) -> None:
    _, organisation, folder = two_importers
    proc = feed_import(
        organisation.ods_code, folder, "--batch-size", "2", "--no-progress", "--jobs", jobs
    )
    wait_for_progress(organisation, 40, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert b"Run the same command again to carry on" in err
    # Stopped on a boundary: what the batches' audit events cover is exactly what
    # the checkpoints say is done, nothing half-applied.
    stopped = {
        c.file_name: c.lines_done
        for c in ImportCheckpoint.objects.filter(organisation=organisation)
    }
    assert {f: max(c) for f, c in audited_lines(organisation).items()} == {
        f: n for f, n in stopped.items() if n
    }
    assert sum(stopped.values()) < sum(LINES.values())
    assert b"Traceback" not in err

    again = feed_import(organisation.ods_code, folder, "--no-progress")
    again.communicate(timeout=300)
    assert again.returncode == 0
    assert Entry.objects.filter(source_org=organisation).count() == HELD
    assert counts(organisation)["created"] == HELD


def test_two_import_processes_store_exactly_what_one_does(
    two_importers: tuple[Organisation, Organisation, Path],
) -> None:
    one, two, folder = two_importers
    single = feed_import(one.ods_code, folder, "--batch-size", "20")
    assert single.wait(timeout=300) == 0, single.communicate()
    parallel = feed_import(two.ods_code, folder, "--batch-size", "20", "--jobs", "2")
    out, err = parallel.communicate(timeout=300)
    assert parallel.returncode == 0, err

    assert rows(two) == rows(one)
    assert counts(two) == counts(one)
    for file, covered in audited_lines(two).items():
        assert covered == sorted(covered) == list(range(1, len(covered) + 1)), file
    assert f"Stored {HELD} (created {HELD}, updated 0, unchanged 0)".encode() in out
