"""The protobuf wire format as far as recognising an ONNX model goes: kept apart from the ONNX analyser so the
format sniffer can use it without importing a scanner (which would close a circle through the scan context)."""

from __future__ import annotations

VARINT, I64, LEN, I32 = 0, 1, 2, 5
_MODEL_WIRE = {1: VARINT, 2: LEN, 3: LEN, 4: LEN, 5: VARINT, 6: LEN, 7: LEN, 8: LEN, 14: LEN, 20: LEN, 25: LEN, 26: LEN}
"""ModelProto field number -> wire type."""


def looks_like_onnx(head: bytes, size: int | None) -> bool:
    """A ModelProto: ``ir_version`` first, then at least one more well-formed top-level field."""
    if len(head) < 4 or head[0] != 0x08 or not 1 <= head[1] <= 64:
        return False
    pos, fields = 2, 1
    try:
        while pos < len(head) and fields < 4:
            tag, pos = varint_at(head, pos)
            if _MODEL_WIRE.get(tag >> 3) != tag & 7:
                return False
            value, pos = varint_at(head, pos)
            pos += value if tag & 7 == LEN else 0  # a field that runs past the end is the scanner's to report
            fields += 1
    except IndexError:
        pass  # the head ends inside a field: what was read is consistent
    return fields >= 2


def varint_at(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it; IndexError past the end or after 10 bytes."""
    value = shift = 0
    for _ in range(10):
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    raise IndexError("varint too long")
