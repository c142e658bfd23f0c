"""RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value.

Audit-log entries and signed tree heads are hashed and signed as bytes, so two
parties that hold the same JSON value must produce the same bytes. JCS fixes
the three things plain ``json.dumps`` leaves open: member order (sorted by
UTF-16 code units), string escaping (only what JSON requires), and number
formatting (ECMAScript ``Number.prototype.toString``).

Written by hand because no maintained, typed implementation is among our
dependencies and the algorithm is short; the number formatting is the only
subtle part and is derived from Python's shortest round-trip ``repr`` (the
same digit selection ECMAScript requires).

Decisions this module makes where the RFC leaves room:

* Python ``int`` values are accepted only in the I-JSON "safe" range
  ``|n| <= 2**53 - 1``. Outside it a JSON number cannot name one integer
  (``2**53`` and ``2**53 + 1`` are the same IEEE double), so such values are
  refused rather than silently rounded; put large integers in strings. Large
  *floats* are ordinary doubles and serialise per the RFC (``2.0**60`` gives
  ``1152921504606847000``); :func:`loads` reads such integer-looking literals
  back as ``float`` and refuses those no double represents without loss.
* ``float`` NaN and infinities are refused (RFC 8785 §3.2.2.2).
* Strings containing lone surrogates are refused: they have no UTF-8 form.
* Accepted containers: ``dict``/``Mapping`` with ``str`` keys, ``list`` and
  ``tuple``. Anything else (bytes, sets, dataclasses, Decimal...) is refused.
* Nesting deeper than :data:`MAX_DEPTH` is refused (also stops cycles).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "JCSError",
    "JSONValue",
    "canonicalize",
    "loads",
    "serialize_number",
]

MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 200

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]


class JCSError(ValueError):
    """A value (or JSON text) that has no RFC 8785 canonical form."""


def _build_escapes() -> dict[int, str]:
    table = {c: f"\\u{c:04x}" for c in range(0x20)}
    table.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"})
    table[ord('"')] = '\\"'
    table[ord("\\")] = "\\\\"
    return table


_ESCAPES = _build_escapes()


def _check_utf8(s: str, where: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JCSError(f"{where}: string contains a lone surrogate at position {exc.start}") from None


def _serialize_string(s: str, where: str) -> str:
    _check_utf8(s, where)
    return '"' + s.translate(_ESCAPES) + '"'


def _sort_key(key: str) -> bytes:
    # UTF-16BE bytes compare exactly like the sequence of UTF-16 code units.
    return key.encode("utf-16-be")


def serialize_number(value: float) -> str:
    """ECMAScript Number::toString for a finite double (RFC 8785 §3.2.2.3)."""
    if math.isnan(value) or math.isinf(value):
        raise JCSError(f"{value!r} is not a JSON number (NaN and Infinity are refused)")
    if value == 0:
        return "0"  # covers -0.0 too
    if value < 0:
        return "-" + serialize_number(-value)
    # repr gives the shortest digit string that round-trips, closest to the value:
    # exactly the (s, k, n) that ECMAScript asks for.
    text = repr(float(value))
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    int_part, _, frac_part = mantissa.partition(".")
    raw = int_part + frac_part  # value = 0.raw * 10**(len(int_part) + exponent)
    significant = raw.lstrip("0")
    digits = significant.rstrip("0")
    k = len(digits)
    n = len(int_part) + exponent - (len(raw) - len(significant))  # value = s * 10**(n - k)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    exp = n - 1
    sign = "+" if exp >= 0 else "-"
    head = digits[0] if k == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{sign}{abs(exp)}"


def _serialize(value: object, out: list[str], depth: int, where: str) -> None:
    if depth > MAX_DEPTH:
        raise JCSError(f"{where}: nesting deeper than {MAX_DEPTH} levels (or a reference cycle)")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_serialize_string(value, where))
    elif isinstance(value, int):
        number = int(value)
        if abs(number) > MAX_SAFE_INTEGER:
            raise JCSError(
                f"{where}: integer {number} is outside the exact range ±(2**53 - 1); encode it as a string"
            )
        out.append(str(number))
    elif isinstance(value, float):
        try:
            out.append(serialize_number(float(value)))
        except JCSError as exc:
            raise JCSError(f"{where}: {exc}") from None
    elif isinstance(value, Mapping):
        items: list[tuple[bytes, str, object]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise JCSError(f"{where}: object key {key!r} is a {type(key).__name__}, not a str")
            _check_utf8(key, f"{where}: key {key!r}")
            items.append((_sort_key(key), key, item))
        items.sort(key=lambda t: t[0])
        out.append("{")
        for i, (_, key, item) in enumerate(items):
            if i:
                out.append(",")
            out.append(_serialize_string(key, where))
            out.append(":")
            _serialize(item, out, depth + 1, f"{where}.{key}")
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _serialize(item, out, depth + 1, f"{where}[{i}]")
        out.append("]")
    else:
        raise JCSError(f"{where}: {type(value).__name__} is not a JSON type")


def canonicalize(value: object) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value; :class:`JCSError` if it has none."""
    out: list[str] = []
    _serialize(value, out, 0, "$")
    return "".join(out).encode("utf-8")


def _refuse_constant(name: str) -> Any:
    raise JCSError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JCSError(f"duplicate object key {key!r}")
        result[key] = value
    return result


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JCSError(f"number {text} overflows an IEEE double")
    return value


def _parse_int(text: str) -> int | float:
    value = int(text)
    if abs(value) <= MAX_SAFE_INTEGER:
        return value
    # Under RFC 8785 every number is an IEEE double. Read a large integer literal as
    # the double it denotes, but only if nothing is lost: either the double equals
    # the literal exactly, or the literal is that double's canonical form (which is
    # how canonicalize() writes e.g. 2.0**60). 9007199254740993 is refused.
    number = float(text)
    if math.isinf(number):
        raise JCSError(f"number {text[:40]} overflows an IEEE double")
    if int(number) != value and serialize_number(number) != text:
        raise JCSError(
            f"integer {text[:40]} is outside the exact range ±(2**53 - 1) and is not an IEEE double; "
            "encode it as a string"
        )
    return number


def loads(data: bytes | str) -> JSONValue:
    """Parse JSON strictly: UTF-8 only, no duplicate keys, no NaN/Infinity, no overflowing numbers.

    The result always has a canonical form, so ``canonicalize(loads(x)) == x``
    tells whether ``x`` is already canonical.
    """
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JCSError(f"JSON text is not valid UTF-8 (byte {exc.start})") from None
    elif isinstance(data, str):
        text = data
    else:
        raise JCSError(f"expected bytes or str, got {type(data).__name__}")
    try:
        value: JSONValue = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_refuse_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except JCSError:
        raise
    except RecursionError:
        raise JCSError("JSON text nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise JCSError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # e.g. int() digit limit on huge integers
        raise JCSError(f"invalid JSON: {exc}") from None
    try:
        canonicalize(value)  # enforces the integer range, depth and surrogate rules
    except JCSError as exc:
        raise JCSError(f"JSON text has no canonical form: {exc}") from None
    return value
