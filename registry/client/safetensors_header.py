"""The safetensors header, parsed strictly: lengths, offsets, dtypes and shapes checked before any tensor exists.

Hand-written because the safetensors library silently accepts duplicate keys."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


MAX_HEADER_BYTES = 100_000_000
"""Largest safetensors JSON header accepted (the safetensors library's own limit)."""

# safetensors dtype -> (torch attribute, bytes per element). F4/F6 pack sub-byte elements: not supported.
DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("bool", 1), "U8": ("uint8", 1), "I8": ("int8", 1), "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1), "F8_E4M3FNUZ": ("float8_e4m3fnuz", 1), "F8_E5M2FNUZ": ("float8_e5m2fnuz", 1),
    "F8_E8M0": ("float8_e8m0fnu", 1), "I16": ("int16", 2), "U16": ("uint16", 2), "F16": ("float16", 2),
    "BF16": ("bfloat16", 2), "I32": ("int32", 4), "U32": ("uint32", 4), "F32": ("float32", 4),
    "I64": ("int64", 8), "U64": ("uint64", 8), "F64": ("float64", 8), "C64": ("complex64", 8),
}  # fmt: skip
_SUB_BYTE_DTYPES = frozenset(["F4", "F6_E2M3", "F6_E3M2"])
_ENTRY_KEYS = frozenset(["dtype", "shape", "data_offsets"])


class SafetensorsHeaderError(ValueError):
    """A safetensors header the loader refuses; the message says what is wrong (no file name)."""


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor of a safetensors file: offsets are relative to the start of the data region."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True, slots=True)
class SafetensorsLayout:
    """A validated header: the tensors in data order, tiling the data region exactly."""

    header_size: int
    tensors: tuple[TensorSpec, ...]
    metadata: dict[str, str]
    ends: tuple[int, ...] = ()
    """Each tensor's end offset, in order (for finding the tensors a byte range touches)."""

    @property
    def data_start(self) -> int:
        return 8 + self.header_size


def parse_header_length(first8: bytes, file_size: int, *, max_header: int = MAX_HEADER_BYTES) -> int:
    """The JSON header length from a file's first 8 bytes, checked against the limit and the file size."""
    if len(first8) < 8 or file_size < 8:
        raise SafetensorsHeaderError(f"file of {file_size} bytes is too short for a safetensors header")
    n = int.from_bytes(first8[:8], "little")
    if n > max_header:
        raise SafetensorsHeaderError(f"header length {n} exceeds the {max_header}-byte limit")
    if 8 + n > file_size:
        raise SafetensorsHeaderError(f"header length {n} runs past the end of the file ({file_size} bytes)")
    return n


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise SafetensorsHeaderError(f"duplicate key {key[:80]!r} in the header (readers disagree on which wins)")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise SafetensorsHeaderError(f"non-standard JSON constant {name} in the header")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_safetensors_header(header: bytes, data_size: int) -> SafetensorsLayout:
    """Validate a safetensors JSON header strictly against a data region of ``data_size`` bytes.

    Stricter than the safetensors library where it is lenient: duplicate keys, unknown entry
    keys and NaN constants are refused. As in the library, tensors must tile the data region
    exactly (no gap, no overlap, nothing after the last one), so no byte is unaccounted for.
    """
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SafetensorsHeaderError(f"header is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        parsed = json.loads(text, object_pairs_hook=_pairs_without_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, SafetensorsHeaderError):
            raise
        raise SafetensorsHeaderError(f"header is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(parsed, dict):
        raise SafetensorsHeaderError("header is not a JSON object")
    metadata: dict[str, str] = {}
    specs: list[TensorSpec] = []
    for name, info in parsed.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise SafetensorsHeaderError("__metadata__ must map strings to strings")
            metadata = dict(info)
            continue
        specs.append(_parse_entry(name, info, data_size))
    specs.sort(key=lambda s: (s.begin, s.end))
    position = 0
    for spec in specs:
        if spec.begin != position:
            what = "overlaps the previous tensor" if spec.begin < position else f"leaves {spec.begin - position} bytes"
            raise SafetensorsHeaderError(f"tensor {spec.name[:80]!r} {what} (data must be contiguous)")
        position = spec.end
    if position != data_size:
        raise SafetensorsHeaderError(
            f"tensors cover {position} bytes but the data region has {data_size} (hidden or missing data)"
        )
    return SafetensorsLayout(len(header), tuple(specs), metadata, tuple(s.end for s in specs))


def _parse_entry(name: str, info: object, data_size: int) -> TensorSpec:
    shown = repr(name[:80])
    if not isinstance(info, dict) or info.keys() != _ENTRY_KEYS:
        raise SafetensorsHeaderError(f"tensor {shown}: entry must have exactly the keys dtype, shape, data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or (dtype not in DTYPES and dtype not in _SUB_BYTE_DTYPES):
        raise SafetensorsHeaderError(f"tensor {shown}: unknown dtype {str(dtype)[:40]!r}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise SafetensorsHeaderError(f"tensor {shown}: shape must be a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_size
    ):
        raise SafetensorsHeaderError(
            f"tensor {shown}: data_offsets must be [begin, end] with 0 <= begin <= end <= {data_size}"
        )
    if dtype in _SUB_BYTE_DTYPES:
        raise SafetensorsHeaderError(f"tensor {shown}: dtype {dtype} is not supported by the verified loader")
    nbytes = math.prod(shape) * DTYPES[dtype][1]
    if offsets[1] - offsets[0] != nbytes:
        raise SafetensorsHeaderError(
            f"tensor {shown}: shape {shape[:8]} x {dtype} is {nbytes} bytes but data_offsets span "
            f"{offsets[1] - offsets[0]}"
        )
    return TensorSpec(name=name, dtype=dtype, shape=tuple(shape), begin=offsets[0], end=offsets[1])
