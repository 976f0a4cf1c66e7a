"""Credentials the platform must use again, sealed at rest.

A subscription's signing secret and a launch system's SMART client secret are
credentials: whoever reads a database dump or a backup must not be able to
sign notifications or act as our client with them. Unlike a password they
cannot be hashed (we must use them), so they are sealed with Fernet
(AES-128-CBC with HMAC-SHA256, from the cryptography package) under
`SEALING_KEYS`: the first key seals, every key opens, so a key is rotated by
putting a new one first and running `manage.py secrets_reseal`. Without the
setting (a developer's machine) the key is derived from SECRET_KEY, and
`check --deploy` warns; that derived key always opens last, so setting
SEALING_KEYS later and running `secrets_reseal` moves what it sealed.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import migrations, models, transaction
from psycopg import sql


def _derived_key(secret_key: str) -> bytes:
    """The key used while SEALING_KEYS is unset, derived from SECRET_KEY (HKDF-SHA256)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"sharedrecord-sealing", info=None)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


@functools.lru_cache(maxsize=4)
def _sealer(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    # The derived key always opens last: what was sealed before SEALING_KEYS was set still
    # opens, so `secrets_reseal` can move it under the configured keys.
    try:
        fernets = [Fernet(key.strip()) for key in keys if key.strip()]
    except ValueError as exc:
        raise ImproperlyConfigured(
            "SEALING_KEYS holds a key that is not a Fernet key (32 bytes, url-safe base64; "
            "make one with `manage.py secrets_reseal --new-key`)."
        ) from exc
    return MultiFernet([*fernets, Fernet(_derived_key(secret_key))])


def sealer() -> MultiFernet:
    """The configured keys: the first seals, each opens."""
    return _sealer(tuple(settings.SEALING_KEYS), settings.SECRET_KEY)


def seal(plain: str) -> str:
    """The text sealed under the first key (a Fernet token, different every time)."""
    return sealer().encrypt(plain.encode()).decode()


def unseal(sealed: str) -> str:
    """The credential; refuses (ImproperlyConfigured) when no configured key opens it."""
    try:
        return sealer().decrypt(sealed.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A sealed credential opens under none of SEALING_KEYS: was a key removed?"
        ) from exc


def _opens(text: str) -> bool:
    try:
        sealer().decrypt(text.encode())
    except InvalidToken:
        return False
    return True


def new_key() -> str:
    """A fresh key for SEALING_KEYS."""
    return Fernet.generate_key().decode()


class SealedTextField(models.TextField):  # type: ignore[type-arg]
    """A text column stored sealed; read back as the plain text. Empty stays empty.

    Never filter on it: each sealing of the same text differs.
    """

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return unseal(value) if value else value

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return seal(value) if value else value


def credentials_reseal() -> dict[str, int]:
    """Seal every kept credential again under the first key; how many, by model.

    After a new key is put first in SEALING_KEYS; once this has run, the old
    keys can be removed.
    """
    counts: dict[str, int] = {}
    with transaction.atomic():
        for model in apps.get_models():
            fields = [f.name for f in model._meta.fields if isinstance(f, SealedTextField)]
            for name in fields:
                rows = model._default_manager.exclude(**{name: ""}).values_list("pk", name)
                for pk, plain in rows:
                    model._default_manager.filter(pk=pk).update(**{name: plain})
                counts[f"{model._meta.label}.{name}"] = len(rows)
    return counts


def column_sealing(table: str, column: str) -> migrations.RunPython:
    """A migration step sealing a column's plain values (and opening them when reversed)."""

    def rewrite(schema_editor: Any, change: Callable[[str], str]) -> None:
        names = {"table": sql.Identifier(table), "column": sql.Identifier(column)}
        select = sql.SQL("SELECT id, {column} FROM {table} WHERE {column} <> ''").format(**names)
        update = sql.SQL("UPDATE {table} SET {column} = %s WHERE id = %s").format(**names)
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(select)
            for pk, value in cursor.fetchall():
                if change is seal and _opens(value):
                    continue  # sealed already (the step ran before): never seal twice
                cursor.execute(update, [change(value), pk])

    return migrations.RunPython(
        lambda _apps, schema_editor: rewrite(schema_editor, seal),
        lambda _apps, schema_editor: rewrite(schema_editor, unseal),
    )
