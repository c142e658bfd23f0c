"""GGUF (llama.cpp) files: the header and metadata read with strict bounds, every chat template analysed.

A GGUF file's tensors are data, but its metadata carries Jinja chat templates (``tokenizer.chat_template``
and the named ``tokenizer.chat_template.<name>`` variants) that Python loaders render in-process, so each
one goes through :mod:`scanners.chat_template`. The layout is checked the way llama.cpp's reader checks
it, without trusting a single count or length: every count and length is bounded by the bytes that are
left and by :class:`~scanners.limits.Limits`, nothing is read into memory but keys and templates, tensor
data is never read, and tensors must lie inside the file. A file that breaks the format is ``error``;
duplicate keys or tensors and bytes after the last tensor (room to hide data) are ``suspicious``.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING

from scanners.errors import LimitExceeded, MalformedError, TruncatedError
from scanners.report import Verdict

if TYPE_CHECKING:
    from scanners.context import Context
    from scanners.source import Reader

TEMPLATE_KEY = "tokenizer.chat_template"
STRING, ARRAY = 8, 9
SCALARS: dict[int, tuple[str, int]] = {
    0: ("B", 1), 1: ("b", 1), 2: ("H", 2), 3: ("h", 2), 4: ("I", 4), 5: ("i", 4), 6: ("f", 4), 7: ("?", 1),
    10: ("Q", 8), 11: ("q", 8), 12: ("d", 8),
}  # fmt: skip
"""Metadata value type -> (struct code, size)."""

GGML_TYPES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}  # fmt: skip
"""ggml tensor type -> (elements per block, bytes per block), as ggml defines them."""

MAX_DIMS = 4
MAX_NAME = 64 * 1024
DEFAULT_ALIGNMENT = 32


class _Meta:
    """A bounded cursor over the metadata: every length is checked against what is left."""

    def __init__(self, ctx: Context, reader: Reader, member: str, endian: str) -> None:
        self.ctx, self.reader, self.member, self.endian = ctx, reader, member, endian
        self.items = 0

    def left(self) -> int | None:
        return None if self.reader.size is None else self.reader.size - self.reader.tell()

    def count(self, n: int, unit: int, what: str) -> None:
        """Refuse ``n`` items of at least ``unit`` bytes each that cannot fit, or break the item limit."""
        offset = self.reader.tell()
        left = self.left()
        if left is not None and n * unit > left:
            raise MalformedError(f"{what}: {n} items cannot fit in the {left} bytes left", offset=offset)
        self.items += n
        if self.items > self.ctx.limits.max_metadata_items:
            raise LimitExceeded(f"{what}: more than {self.ctx.limits.max_metadata_items} metadata items",
                                offset=offset)  # fmt: skip

    def scalar(self, code: str, size: int, what: str) -> int | float | bool:
        value: int | float | bool = struct.unpack(self.endian + code, self.reader.read_exact(size, what))[0]
        return value

    def u32(self, what: str) -> int:
        return int(self.scalar("I", 4, what))

    def u64(self, what: str) -> int:
        return int(self.scalar("Q", 8, what))

    def string(self, what: str, keep: int) -> bytes | None:
        """A length-prefixed string: its bytes if at most ``keep`` long, else skipped (None)."""
        offset = self.reader.tell()
        n = self.u64(f"{what} length")
        left = self.left()
        if left is not None and n > left:
            raise TruncatedError(f"{what} of {n} bytes, but only {left} bytes are left", offset=offset)
        if n > keep:
            self.reader.skip(n, what)
            return None
        return self.reader.read_exact(n, what)

    def key(self) -> str:
        offset = self.reader.tell()
        raw = self.string("metadata key", MAX_NAME)
        if raw is None:
            raise MalformedError(f"metadata key longer than {MAX_NAME} bytes", offset=offset)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedError(f"metadata key is not UTF-8: {raw[:60]!r}", offset=offset) from None

    def value(self, vtype: int, what: str, texts: list[bytes] | None, depth: int = 0) -> object:
        """Read (or skip) one value; strings are collected into ``texts`` when it is given."""
        if vtype in SCALARS:
            return self.scalar(*SCALARS[vtype], what)
        if vtype == STRING:
            keep = self.ctx.limits.max_config_bytes if texts is not None else 0
            offset = self.reader.tell()
            raw = self.string(what, keep)
            if texts is not None:
                if raw is None:
                    raise LimitExceeded(f"{what} is larger than {keep} bytes: not analysed", offset=offset)
                texts.append(raw)
            return None
        if vtype != ARRAY:
            raise MalformedError(f"{what}: unknown metadata value type {vtype}", offset=self.reader.tell())
        if depth >= self.ctx.limits.max_depth:
            raise LimitExceeded(f"{what}: arrays nested deeper than {self.ctx.limits.max_depth}")
        etype = self.u32(f"{what} element type")
        n = self.u64(f"{what} element count")
        if etype in SCALARS:
            self.count(n, SCALARS[etype][1], what)
            self.reader.skip(n * SCALARS[etype][1], what)
            return None
        self.count(n, 8 if etype == STRING else 12, what)
        if etype == STRING and texts is None:
            for _ in range(n):  # the common case (vocabularies, merges): lengths read, bytes skipped
                self.string(f"{what} element", 0)
            return None
        for i in range(n):
            self.value(etype, f"{what}[{i}]", texts, depth + 1)
        return None


def _check_template(ctx: Context, key: str, raw: bytes, member: str) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        ctx.add(Verdict.SUSPICIOUS, f"chat template {key!r} is not valid UTF-8 (byte {exc.start}); analysed "
                "with the invalid bytes dropped, as a lenient loader reads it", member=member, symbol=key)  # fmt: skip
        text = raw.decode("utf-8", "ignore")
    from scanners import chat_template  # jinja2: imported only where a template is found

    for verdict, message in chat_template.analyse(text):
        ctx.add(verdict, f"chat template {key!r}: {message}", member=member, symbol=key)


def scan_gguf(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    reader.read_exact(4, "GGUF magic")
    raw_version = reader.read_exact(4, "GGUF version")
    version, swapped = struct.unpack("<I", raw_version)[0], struct.unpack(">I", raw_version)[0]
    endian = "<" if version < 0x10000 else ">"
    version = version if endian == "<" else swapped
    if version not in (2, 3):
        raise MalformedError(f"unsupported GGUF version {version} (readers accept 2 and 3)", offset=4)
    meta = _Meta(ctx, reader, member, endian)
    n_tensors = meta.u64("tensor count")
    n_kv = meta.u64("metadata count")
    meta.count(n_tensors, 24, "tensor infos")
    meta.count(n_kv, 12, "metadata")

    alignment = DEFAULT_ALIGNMENT
    seen: set[str] = set()
    for _ in range(n_kv):
        offset = reader.tell()
        key = meta.key()
        if key in seen:
            ctx.add(Verdict.SUSPICIOUS, f"duplicate metadata key {key!r} (readers disagree on which they use)",
                    member=member, offset=offset, symbol=key)  # fmt: skip
        seen.add(key)
        vtype = meta.u32(f"type of {key!r}")
        is_template = key == TEMPLATE_KEY or key.startswith(TEMPLATE_KEY + ".")
        texts: list[bytes] | None = [] if is_template else None
        value = meta.value(vtype, repr(key), texts)
        for raw in texts or []:
            _check_template(ctx, key, raw, member)
        if key == "general.alignment":
            if vtype != 4 or not isinstance(value, int) or value <= 0 or value & (value - 1):
                raise MalformedError(f"general.alignment must be a u32 power of two, not {value!r}", offset=offset)
            alignment = value

    names: set[str] = set()
    spans: list[tuple[int, int, str]] = []
    sized = True
    for i in range(n_tensors):
        offset = reader.tell()
        raw_name = meta.string(f"tensor {i} name", MAX_NAME)
        name = (raw_name or b"").decode("utf-8", "replace")
        if raw_name is None:
            raise MalformedError(f"tensor {i} name longer than {MAX_NAME} bytes", offset=offset)
        if name in names:
            ctx.add(Verdict.SUSPICIOUS, f"duplicate tensor name {name!r}", member=member, offset=offset, symbol=name)
        names.add(name)
        n_dims = meta.u32(f"tensor {name!r} dimension count")
        if n_dims > MAX_DIMS:
            raise MalformedError(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS})", offset=offset)
        dims = [meta.u64(f"tensor {name!r} dimension") for _ in range(n_dims)]
        ggml_type = meta.u32(f"tensor {name!r} type")
        data_offset = meta.u64(f"tensor {name!r} offset")
        if any(d >= 1 << 63 for d in dims) or math.prod(dims) >= 1 << 63:
            raise MalformedError(f"tensor {name!r} has an absurd shape {dims}", offset=offset)
        if data_offset % alignment:
            raise MalformedError(f"tensor {name!r} offset {data_offset} is not aligned to {alignment}", offset=offset)
        if ggml_type not in GGML_TYPES:
            ctx.add(Verdict.SUSPICIOUS, f"tensor {name!r} has unknown ggml type {ggml_type}: its size is unchecked",
                    member=member, offset=offset, symbol=name)  # fmt: skip
            sized = False
            continue
        block, size = GGML_TYPES[ggml_type]
        if dims and dims[0] % block:
            raise MalformedError(f"tensor {name!r}: {dims[0]} is not a multiple of the block size {block}",
                                 offset=offset)  # fmt: skip
        spans.append((data_offset, data_offset + math.prod(dims) // block * size, name))
    _check_data(ctx, reader, member, spans, alignment, sized)
    return "gguf"


def _check_data(
    ctx: Context, reader: Reader, member: str, spans: list[tuple[int, int, str]], alignment: int, sized: bool
) -> None:
    """Tensors lie inside the data section, do not overlap, and (if every size is known) nothing follows."""
    pos = reader.tell()
    start = -(-pos // alignment) * alignment
    available = reader.size - pos if reader.size is not None else reader.drain()
    length = max(available - (start - pos), 0)
    end = 0
    for begin, stop, name in sorted(spans):
        if begin < end:
            raise MalformedError(f"tensor {name!r} overlaps the previous tensor's data", offset=start + begin)
        end = stop
    if end > length:
        raise TruncatedError(f"tensor data ends at {start + end} but the file has {start + length} bytes",
                             offset=start + length)  # fmt: skip
    slack = length - -(-end // alignment) * alignment
    if sized and slack > 0:
        ctx.add(Verdict.SUSPICIOUS, f"{slack} bytes after the last tensor (hidden data; not analysed)",
                member=member, offset=start + length - slack)  # fmt: skip
