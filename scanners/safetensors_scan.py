"""Safetensors validation, stricter than the loader.

A safetensors file cannot run code, but a malformed one can crash or confuse
readers, and one with slack (duplicate keys, gaps, bytes after the last tensor)
can smuggle data past a reviewer. Structural defects the format forbids are
``error``; room to hide data is ``suspicious``. Hand-written rather than calling
the ``safetensors`` library because the library accepts duplicate JSON keys (last
wins) and maps the whole file; this reads the header and skips the data.
"""

from __future__ import annotations

import json
import math
import struct
from typing import TYPE_CHECKING, Any

from scanners.errors import LimitExceeded, MalformedError, TruncatedError
from scanners.report import Verdict

if TYPE_CHECKING:
    from scanners.context import Context
    from scanners.source import Reader

DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip

_ENTRY_KEYS = frozenset(["dtype", "shape", "data_offsets"])


def _pairs_hook(duplicates: list[str]) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for k, v in pairs:
            if k in seen:
                duplicates.append(k)
            seen[k] = v
        return seen

    return hook


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def scan_safetensors(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    (n,) = struct.unpack("<Q", reader.read_exact(8, "safetensors header length"))
    if n > ctx.limits.max_safetensors_header:
        raise LimitExceeded(f"safetensors header of {n} bytes exceeds {ctx.limits.max_safetensors_header}", offset=0)
    if reader.size is not None and 8 + n > reader.size:
        raise TruncatedError(f"safetensors header length {n} runs past the end of the file", offset=0)
    raw = reader.read_exact(n, "safetensors header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError(f"safetensors header is not UTF-8 ({exc.reason})", offset=8 + exc.start) from None
    duplicates: list[str] = []
    try:
        header = json.loads(text, object_pairs_hook=_pairs_hook(duplicates), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise MalformedError(f"safetensors header is not valid JSON: {exc}", offset=8) from None
    if not isinstance(header, dict):
        raise MalformedError("safetensors header is not a JSON object", offset=8)
    for key in sorted(set(duplicates)):
        ctx.add(Verdict.SUSPICIOUS, f"duplicate key {key!r} in the safetensors header (readers keep only one)",
                member=member, offset=8)  # fmt: skip

    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise MalformedError("__metadata__ must map strings to strings", offset=8)
            continue
        spans.append(_check_entry(ctx, member, name, info))

    spans.sort()
    expected = 0
    for begin, end, name in spans:
        if begin < expected:
            raise MalformedError(f"tensor {name!r} overlaps the previous tensor's data", offset=8 + n + begin)
        if begin > expected:
            ctx.add(Verdict.SUSPICIOUS, f"{begin - expected} unused bytes before tensor {name!r}",
                    member=member, offset=8 + n + expected)  # fmt: skip
        expected = end
    data_start = 8 + n
    data_len = reader.size - data_start if reader.size is not None else reader.drain()
    if expected > data_len:
        raise TruncatedError(
            f"tensor data ends at {data_start + expected} but the file has {data_start + data_len} bytes",
            offset=data_start + data_len,
        )
    if expected < data_len:
        ctx.add(Verdict.SUSPICIOUS, f"{data_len - expected} bytes after the last tensor (hidden data)",
                member=member, offset=data_start + expected)  # fmt: skip
    return "safetensors"


def _check_entry(ctx: Context, member: str, name: str, info: object) -> tuple[int, int, str]:
    if not isinstance(info, dict):
        raise MalformedError(f"tensor {name!r}: entry is not an object", offset=8)
    missing = _ENTRY_KEYS - info.keys()
    if missing:
        raise MalformedError(f"tensor {name!r}: missing {', '.join(sorted(missing))}", offset=8)
    extra = info.keys() - _ENTRY_KEYS
    if extra:
        ctx.add(Verdict.SUSPICIOUS, f"tensor {name!r} has unexpected header keys {sorted(extra)}",
                member=member, offset=8)  # fmt: skip
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise MalformedError(f"tensor {name!r}: unknown dtype {dtype!r}", offset=8)
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise MalformedError(f"tensor {name!r}: shape must be a list of non-negative integers", offset=8)
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise MalformedError(f"tensor {name!r}: data_offsets must be [begin, end] with 0 <= begin <= end", offset=8)
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8:
        raise MalformedError(f"tensor {name!r}: {dtype} shape {shape} is not a whole number of bytes", offset=8)
    if offsets[1] - offsets[0] != bits // 8:
        raise MalformedError(
            f"tensor {name!r}: shape {shape} x {dtype} is {bits // 8} bytes but data_offsets span "
            f"{offsets[1] - offsets[0]}",
            offset=8,
        )
    begin: int = offsets[0]
    end: int = offsets[1]
    return begin, end, name
