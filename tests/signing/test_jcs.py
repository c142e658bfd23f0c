"""RFC 8785 canonicalisation: the RFC's own examples, the edge rules, and round-trip properties."""

from __future__ import annotations

import json
import math
import struct
from collections import OrderedDict
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing.jcs import MAX_DEPTH, MAX_SAFE_INTEGER, JCSError, canonicalize, loads, serialize_number

# RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript serialisation.
NUMBER_TABLE = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def _double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


@pytest.mark.parametrize(("bits", "expected"), NUMBER_TABLE)
def test_rfc8785_number_table(bits: str, expected: str) -> None:
    assert serialize_number(_double(bits)) == expected
    assert canonicalize(_double(bits)) == expected.encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_are_refused(bits: str) -> None:
    with pytest.raises(JCSError, match="NaN and Infinity"):
        canonicalize({"x": [_double(bits)]})


def test_rfc8785_main_example() -> None:
    # RFC 8785 §3.2.2 input, as JSON text, and its §3.2.3 canonical output.
    text = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonicalize(loads(text)) == expected.encode("utf-8")


def test_rfc8785_sorting_example() -> None:
    # RFC 8785 §3.2.3: keys sort by UTF-16 code units, so the emoji (a surrogate pair
    # starting 0xD83D) sorts before U+FB33 although its code point is larger.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    out = canonicalize(value).decode("utf-8")
    assert list(json.loads(out)) == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert out.startswith('{"\\r":"Carriage Return","1":"One","\u0080":"Control"')


def test_string_escaping_is_minimal() -> None:
    s = "".join(chr(c) for c in range(0x20)) + '"\\/\x7f\u2028é'
    out = canonicalize(s).decode("utf-8")
    assert out == (
        '"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f'
        "\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c"
        '\\u001d\\u001e\\u001f\\"\\\\/\x7f\u2028é"'
    )
    assert json.loads(out) == s


def test_literals_ints_and_containers() -> None:
    assert canonicalize(None) == b"null"
    assert canonicalize(True) == b"true"
    assert canonicalize([1, -1, 0, 10.0, -0.0, 1.5]) == b"[1,-1,0,10,0,1.5]"
    assert canonicalize({"b": [], "a": {}}) == b'{"a":{},"b":[]}'
    assert canonicalize(("x", 1)) == b'["x",1]'
    assert canonicalize(OrderedDict([("z", 1), ("a", 2)])) == b'{"a":2,"z":1}'
    assert canonicalize(MAX_SAFE_INTEGER) == b"9007199254740991"
    assert canonicalize(-MAX_SAFE_INTEGER) == b"-9007199254740991"
    assert canonicalize(1e21) == b"1e+21"
    assert canonicalize(1e20) == b"100000000000000000000"
    assert canonicalize(2.0**60) == b"1152921504606847000"
    assert canonicalize(1e-6) == b"0.000001"
    assert canonicalize(1e-7) == b"1e-7"
    assert canonicalize(123e-20) == b"1.23e-18"


@pytest.mark.parametrize("n", [MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 2**64, -(10**30)])
def test_unsafe_integers_are_refused(n: int) -> None:
    with pytest.raises(JCSError, match=r"outside the exact range"):
        canonicalize({"n": n})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"bytes", "bytes is not a JSON type"),
        ({1, 2}, "set is not a JSON type"),
        (Decimal("1.5"), "Decimal is not a JSON type"),
        (object(), "object is not a JSON type"),
        ({1: "x"}, "object key 1 is a int"),
        ({("a",): 1}, "is a tuple"),
        ({"a": [1, {"b": b"x"}]}, r"\$\.a\[1\]\.b: bytes is not a JSON type"),
        ("bad \ud800 surrogate", "lone surrogate"),
        ({"\udfff": 1}, "lone surrogate"),
    ],
)
def test_non_json_values_are_refused(value: object, message: str) -> None:
    with pytest.raises(JCSError, match=message):
        canonicalize(value)


def test_depth_limit_and_cycles() -> None:
    deep: list[object] = []
    node = deep
    for _ in range(MAX_DEPTH - 1):
        child: list[object] = []
        node.append(child)
        node = child
    canonicalize(deep)
    node.append([[]])
    with pytest.raises(JCSError, match="nesting deeper"):
        canonicalize(deep)
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(JCSError, match="reference cycle"):
        canonicalize(cycle)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"a":1,"a":2}', "duplicate object key 'a'"),
        (b"[NaN]", "NaN is not a JSON number"),
        (b"[-Infinity]", "-Infinity is not a JSON number"),
        (b"[1e400]", "overflows"),
        (b"[9007199254740993]", "outside the exact range"),
        (b"[1.5e308, 1e309]", "overflows"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b'{"a":', "invalid JSON"),
        (b"", "invalid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply|nesting deeper"),
        (b'["\\ud800"]', "lone surrogate"),
        (b"1" * 5000, "invalid JSON"),
    ],
)
def test_strict_loads_refuses(text: bytes, message: str) -> None:
    with pytest.raises(JCSError, match=message):
        loads(text)


def test_loads_refuses_non_text() -> None:
    with pytest.raises(JCSError, match="expected bytes or str"):
        loads(42)  # type: ignore[arg-type]


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_round_trip_and_idempotence(value: object) -> None:
    out = canonicalize(value)
    # Plain json.loads reads "18129869932401350" (a double's canonical form) as an int;
    # under RFC 8785 numbers are doubles, so compare numbers as doubles there.
    assert _as_doubles(json.loads(out)) == _as_doubles(value)
    parsed = loads(out)
    assert parsed == value
    assert canonicalize(parsed) == out


def _as_doubles(value: object) -> object:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {k: _as_doubles(v) for k, v in value.items()}
    assert isinstance(value, list)
    return [_as_doubles(v) for v in value]


def test_large_integer_literals_read_as_doubles_only_without_loss() -> None:
    assert loads("9007199254740992") == 2.0**53
    assert isinstance(loads("9007199254740992"), float)
    assert loads("1152921504606847000") == 2.0**60  # canonical form of the double
    assert loads("1152921504606846976") == 2.0**60  # exact value of the double
    assert canonicalize(loads("[295147905179352830000]")) == b"[295147905179352830000]"
    for bad in ("9007199254740993", "-9007199254740993", "100000000000000000000001"):
        with pytest.raises(JCSError, match="not an IEEE double"):
            loads(bad)
    with pytest.raises(JCSError, match="overflows"):
        loads("1" + "0" * 400)


@given(st.floats(allow_nan=False, allow_infinity=False))
@settings(max_examples=1000, deadline=None)
def test_numbers_round_trip_with_shortest_digits(x: float) -> None:
    s = serialize_number(x)
    assert float(s) == x
    if x != 0:
        # Same significant digits as Python's shortest repr: ECMAScript picks the same ones.
        mantissa = repr(abs(x)).split("e")[0].replace(".", "").strip("0")
        assert s.lstrip("-").split("e")[0].replace(".", "").strip("0") == mantissa
    assert "e" not in s or not (1e-6 <= abs(x) < 1e21)
    if x.is_integer() and abs(x) < 1e21:
        assert "." not in s and "e" not in s


@given(st.dictionaries(st.text(), st.integers(min_value=0, max_value=9), max_size=12))
@settings(max_examples=200, deadline=None)
def test_keys_sorted_by_utf16_code_units(d: dict[str, int]) -> None:
    keys = list(json.loads(canonicalize(d)))
    assert keys == sorted(d, key=_utf16_units)


def _utf16_units(s: str) -> list[int]:
    units: list[int] = []
    for c in s:
        cp = ord(c)
        if cp < 0x10000:
            units.append(cp)
        else:
            units += [0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)]
    return units


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_loads_on_arbitrary_bytes_fails_only_with_jcs_error(data: bytes) -> None:
    try:
        value = loads(data)
    except JCSError:
        return
    assert canonicalize(value)  # anything accepted has a canonical form


def test_float_subclasses_and_int_subclasses_serialise_as_numbers() -> None:
    class MyFloat(float):
        def __repr__(self) -> str:
            return "nonsense"

    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    assert canonicalize([MyFloat(0.5), Level.HIGH]) == b"[0.5,3]"
    assert not math.isnan(float(canonicalize(MyFloat(2.5)).decode()))
