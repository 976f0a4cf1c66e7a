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
import math
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson


def loads(text: str | bytes) -> Any:
    """JSON text as Python, every number with a fraction or an exponent a Decimal.

    A number no decimal here can mean is read as it always was (decimal_of):
    infinite ones (1e400, and the NaN and Infinity Python's json allows) as
    non-finite Decimals, which validation refuses, entry by entry.
    Raises json.JSONDecodeError (a ValueError) for text that is not JSON.
    """
    return json.loads(text, parse_float=decimal_of, parse_constant=Decimal)


MAX_DIGITS = 38  # far beyond any measurement; a double keeps 15 to 17
MAX_EXPONENT = 308  # a double's range


def decimal_of(text: str) -> Decimal | float:
    """A decimal number's text as a Decimal, or as it was read before decimals were kept.

    Beyond a double's range upwards: an infinite Decimal (validation refuses
    it, as it refused the float's infinity). With more than MAX_DIGITS digits,
    or too small for a double: the float (rounded, as before).
    """
    try:
        value = Decimal(text)
    except InvalidOperation:  # an exponent beyond even Decimal's range
        return _as_before(text)
    if len(value.as_tuple().digits) > MAX_DIGITS or abs(value.adjusted()) > MAX_EXPONENT:
        return _as_before(text)
    return value


def _as_before(text: str) -> Decimal | float:
    number = float(text)
    return Decimal(number) if math.isinf(number) else number


def dumps(value: Any) -> str:
    """Python as compact JSON text (orjson's speed), each Decimal written as its own text.

    A non-finite Decimal is written as a string ("Infinity"), which validation
    refuses (orjson would write a non-finite float as null, which is dropped:
    a value would vanish). orjson refuses integers beyond 64 bits, which JSON
    (and jsonb) allow: those values are first made text of their own.
    """
    try:
        return orjson.dumps(value, default=_exact).decode()
    except orjson.JSONEncodeError:
        return orjson.dumps(_big_integers_as_text(value), default=_exact).decode()


def hash_text(value: Any) -> str:
    """JSON text of `value` with sorted keys, for hashing what a resource holds.

    The standard library's form, as content hashes have always been made, so a
    resource sent again unchanged hashes as it did before decimals were kept: a
    Decimal its float writes with the same digits and exponent goes in as that
    float. Any other (5.10, 1E+2) goes in as its text after a NUL, which no
    string sent can hold (receipt refuses it): more precision is a change, and
    a number is never taken for a string.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_hashed)


def _exact(value: Any) -> orjson.Fragment | str:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value)) if value.is_finite() else str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _hashed(value: Any) -> float | str:
    if isinstance(value, Decimal):
        if value.is_finite():
            as_float = float(value)
            if Decimal(repr(as_float)).as_tuple() == value.as_tuple():
                return as_float
        return "\x00" + str(value)
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
    """For a Django JSONField holding a resource: writes as `dumps` does.

    Compact, always: the options json.dumps passes (indent, sort_keys) are not used.
    """

    def encode(self, o: Any) -> str:
        return dumps(o)


class Decoder(json.JSONDecoder):
    """For a Django JSONField holding a resource: reads as `loads` does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "parse_float": decimal_of, "parse_constant": Decimal})
