"""FHIR JSON read and written with its decimals as sent: 5.10 stays 5.10, never 5.1.

FHIR: the precision of a decimal has significance (0.010 is not 0.01) and is
kept. Python's json reads a number with a fraction or an exponent as a float,
which keeps its value and loses its precision; PostgreSQL's jsonb keeps it
(numeric). So the feed parsers read resources with `loads` (each such number a
decimal.Decimal), and what stores or sends them writes with `dumps` (each
Decimal as its own text). Integers stay int. Pure: the feed parsers use it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson


def loads(text: str | bytes) -> Any:
    """JSON text as Python, every number with a fraction or an exponent a Decimal.

    A number beyond what a decimal can mean here (more than MAX_DIGITS digits,
    or beyond a double's range) is read as a float, as it always was: PostgreSQL
    could not store it as written, and validation refuses the infinite.
    Raises json.JSONDecodeError (a ValueError) for text that is not JSON.
    """
    return json.loads(text, parse_float=decimal_of)


MAX_DIGITS = 38  # far beyond any measurement; a double keeps 15 to 17
MAX_EXPONENT = 308  # a double's range


def decimal_of(text: str) -> Decimal | float:
    """A decimal number's text as a Decimal (a float beyond MAX_DIGITS or MAX_EXPONENT)."""
    value = Decimal(text)
    if len(value.as_tuple().digits) > MAX_DIGITS or abs(value.adjusted()) > MAX_EXPONENT:
        return float(text)
    return value


def dumps(value: Any) -> str:
    """Python as compact JSON text (orjson's speed), each Decimal written as its own text.

    orjson refuses integers beyond 64 bits, which JSON (and jsonb) allow: those
    values are first made text of their own (_big_integers_as_text).
    """
    try:
        return orjson.dumps(value, default=_exact).decode()
    except orjson.JSONEncodeError:
        return orjson.dumps(_big_integers_as_text(value), default=_exact).decode()


def hash_text(value: Any) -> str:
    """JSON text of `value` with sorted keys, for hashing what a resource holds.

    The standard library's form, as content hashes have always been made (so
    a resource sent again unchanged hashes as it did before decimals were kept).
    A Decimal its float writes the same way goes in as that float; one written
    with more precision (5.10) as its text, so a change of precision is a change.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_as_before)


def _exact(value: Any) -> orjson.Fragment:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON")


def _as_before(value: Any) -> float | str:
    if isinstance(value, Decimal):
        as_float = float(value)
        return as_float if repr(as_float) == str(value) else str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _big_integers_as_text(value: Any) -> Any:
    """`value` with every integer beyond 64 bits an orjson.Fragment of its digits."""
    if isinstance(value, dict):
        return {key: _big_integers_as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_big_integers_as_text(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return orjson.Fragment(str(value))
    return value


class Encoder(json.JSONEncoder):
    """For a Django JSONField holding a resource: writes as `dumps` does."""

    def encode(self, o: Any) -> str:
        return dumps(o)


class Decoder(json.JSONDecoder):
    """For a Django JSONField holding a resource: reads as `loads` does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "parse_float": decimal_of})
