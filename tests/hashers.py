"""A cheap Argon2 for the tests' own process (STYLE.md section 11: test-only speed-ups)."""

from __future__ import annotations

from django.contrib.auth.hashers import Argon2PasswordHasher


class FastArgon2PasswordHasher(Argon2PasswordHasher):
    """Argon2 with the smallest cost: still "argon2$..." hashes, in a millisecond.

    Django's defaults (100 MiB, two passes, eight lanes) take about 0.25 s a hash
    on the 2-core machine, and most tests create two or more staff with
    passwords. The cost is encoded in each hash, so a worker or server process
    on the real settings still verifies these.
    """

    time_cost = 1
    memory_cost = 64
    parallelism = 1
