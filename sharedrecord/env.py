"""Small typed helpers that read settings from the environment.

Every setting the platform reads comes through one of these, so the names a
deployment must provide can be listed from this module's callers (the compose
file test does exactly that).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_MISSING = object()


def env_str(name: str, default: str | None = None) -> str:
    """Return the variable, or the default; raise if neither exists."""
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise ImproperlyConfigured(f"Set the {name} environment variable.")
        return default
    return value


def env_bool(name: str, *, default: bool) -> bool:
    """Return a boolean that must be spelled exactly `true` or `false`."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value == "true":
        return True
    if value == "false":
        return False
    raise ImproperlyConfigured(f"{name} must be 'true' or 'false', not {value!r}.")


def env_int(name: str, *, default: int) -> int:
    """Return an integer setting."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from exc


def env_list(name: str, *, default: str = "") -> list[str]:
    """Return a comma-separated list with blanks removed."""
    raw = os.environ.get(name) or default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str) -> str:
    """Return a secret from `NAME_FILE` (a mounted secret) or `NAME`; never defaulted."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE names a file that cannot be read.") from exc
    else:
        value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"Set {name} (or {name}_FILE); there is no default.")
    return value
