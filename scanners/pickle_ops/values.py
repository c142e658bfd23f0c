"""Opcodes that push one constant: integers, floats, strings, bytes, None, booleans, buffers.

Large string and bytes payloads are skipped rather than read (``PickleMachine.read_data``),
so a multi-GB BINBYTES8 never lands in memory.
"""

from __future__ import annotations

import codecs
import struct

from scanners.errors import MalformedError
from scanners.pickle_machine import Handler, PickleMachine, parse_int
from scanners.pickle_values import UNKNOWN, Const

_SMALL_INTS = [Const(i) for i in range(256)]
"""Shared constants for BININT1 (never mutated)."""


def op_int(m: PickleMachine) -> bool:  # I: INT (protocol 0), also spells True/False
    line = m.read_line("INT argument")
    if line == b"00":
        return m.push(Const(False))
    if line == b"01":
        return m.push(Const(True))
    return m.push(parse_int(line, m.op_offset))


def op_long(m: PickleMachine) -> bool:  # L
    line = m.read_line("LONG argument")
    if line.endswith(b"L"):
        line = line[:-1]
    return m.push(parse_int(line, m.op_offset))


def op_long1(m: PickleMachine) -> bool:
    n = m.u1()
    return m.push(Const(int.from_bytes(m.r.read_exact(n, "LONG1"), "little", signed=True)))


def op_long4(m: PickleMachine) -> bool:
    n = m.unpack("<i", 4)
    if n < 0:
        raise MalformedError("LONG4 with a negative length", offset=m.op_offset)
    if n > 4096:
        m.r.skip(n, "LONG4")
        return m.push(UNKNOWN)
    return m.push(Const(int.from_bytes(m.r.read_exact(n, "LONG4"), "little", signed=True)))


def op_binint(m: PickleMachine) -> bool:
    return m.push(Const(m.unpack("<i", 4)))


def op_binint1(m: PickleMachine) -> bool:
    m.stack.append(_SMALL_INTS[m.u1()])
    return False


def op_binint2(m: PickleMachine) -> bool:
    return m.push(Const(m.unpack("<H", 2)))


def op_float(m: PickleMachine) -> bool:
    line = m.read_line("FLOAT argument")
    try:
        return m.push(Const(float(line)))
    except ValueError:
        raise MalformedError("bad FLOAT argument", offset=m.op_offset) from None


def op_binfloat(m: PickleMachine) -> bool:
    value: float = struct.unpack(">d", m.r.read_exact(8, "BINFLOAT"))[0]
    return m.push(Const(value))


def op_string(m: PickleMachine) -> bool:  # S: repr-quoted, escape-decoded
    line = m.read_line("STRING argument").rstrip(b"\r")
    if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
        raise MalformedError("STRING argument is not quoted", offset=m.op_offset)
    try:
        raw = codecs.escape_decode(line[1:-1])[0]
    except ValueError as exc:
        raise MalformedError(f"bad escape in STRING: {exc}", offset=m.op_offset) from None
    return m.push(Const(raw.decode("latin-1")))


def op_binstring(m: PickleMachine) -> bool:
    return m.push(m.latin1(m.read_data(m.unpack("<i", 4), text=False, what="BINSTRING")))


def op_short_binstring(m: PickleMachine) -> bool:
    return m.push(m.latin1(m.read_data(m.u1(), text=False, what="SHORT_BINSTRING")))


def op_binbytes(m: PickleMachine) -> bool:
    return m.push(m.read_data(m.unpack("<I", 4), text=False, what="BINBYTES"))


def op_short_binbytes(m: PickleMachine) -> bool:
    return m.push(m.read_data(m.u1(), text=False, what="SHORT_BINBYTES"))


def op_binbytes8(m: PickleMachine) -> bool:
    return m.push(m.read_data(m.unpack("<Q", 8), text=False, what="BINBYTES8"))


def op_bytearray8(m: PickleMachine) -> bool:
    v = m.read_data(m.unpack("<Q", 8), text=False, what="BYTEARRAY8")
    return m.push(Const(bytearray(v.value)) if isinstance(v, Const) and isinstance(v.value, bytes) else v)


def op_unicode(m: PickleMachine) -> bool:  # V: raw-unicode-escape
    line = m.read_line("UNICODE argument")
    try:
        return m.push(Const(line.decode("raw-unicode-escape")))
    except UnicodeDecodeError:
        raise MalformedError("bad UNICODE argument", offset=m.op_offset) from None


def op_short_binunicode(m: PickleMachine) -> bool:
    return m.push(m.read_text(m.u1(), "SHORT_BINUNICODE"))


def op_binunicode(m: PickleMachine) -> bool:
    return m.push(m.read_text(m.unpack("<I", 4), "BINUNICODE"))


def op_binunicode8(m: PickleMachine) -> bool:
    return m.push(m.read_text(m.unpack("<Q", 8), "BINUNICODE8"))


def op_none(m: PickleMachine) -> bool:
    return m.push(Const(None))


def op_true(m: PickleMachine) -> bool:
    return m.push(Const(True))


def op_false(m: PickleMachine) -> bool:
    return m.push(Const(False))


def op_next_buffer(m: PickleMachine) -> bool:
    """Protocol 5 out-of-band data: the loader supplies the buffer, the file names no code, so no finding;
    what the buffer is wrapped in (an ndarray, a bytearray) is judged by its globals like anything else."""
    return m.push(UNKNOWN)


def op_readonly_buffer(m: PickleMachine) -> bool:
    m.top()
    return False


HANDLERS: dict[bytes, Handler] = {
    b"I": op_int, b"L": op_long, b"\x8a": op_long1, b"\x8b": op_long4,
    b"J": op_binint, b"K": op_binint1, b"M": op_binint2, b"F": op_float, b"G": op_binfloat,
    b"S": op_string, b"T": op_binstring, b"U": op_short_binstring,
    b"B": op_binbytes, b"C": op_short_binbytes, b"\x8e": op_binbytes8, b"\x96": op_bytearray8,
    b"V": op_unicode, b"\x8c": op_short_binunicode, b"X": op_binunicode, b"\x8d": op_binunicode8,
    b"N": op_none, b"\x88": op_true, b"\x89": op_false,
    b"\x97": op_next_buffer, b"\x98": op_readonly_buffer,
}  # fmt: skip
