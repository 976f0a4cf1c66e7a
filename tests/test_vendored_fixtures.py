"""The vendored third-party fixtures are exactly the files SHA256SUMS lists, unchanged."""

from __future__ import annotations

import hashlib

from tests.factories import EXTERNAL

UNLISTED = {"README.md", "SHA256SUMS"}


def listed() -> dict[str, str]:
    sums = {}
    for line in (EXTERNAL / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.removeprefix("./")] = digest
    return sums


def test_every_vendored_fixture_matches_its_checksum() -> None:
    sums = listed()
    assert len(sums) > 300
    changed = [
        name
        for name, digest in sums.items()
        if hashlib.sha256((EXTERNAL / name).read_bytes()).hexdigest() != digest
    ]
    assert changed == []


def test_nothing_is_vendored_without_a_checksum() -> None:
    present = {
        str(path.relative_to(EXTERNAL))
        for path in EXTERNAL.rglob("*")
        if path.is_file() and path.name not in UNLISTED
    }
    assert present == set(listed())


def test_the_fixtures_live_inside_the_repository() -> None:
    from tests.factories import BASE_DIR

    assert EXTERNAL.is_relative_to(BASE_DIR / "tests")
