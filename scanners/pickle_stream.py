"""Pickle streams: one pickle, several concatenated, and legacy (pre-zip) torch files.

``pickle.load`` called in a loop, and ``torch.load`` on a legacy file, run every
pickle in a stream, not only the first, so every pickle is analysed. A legacy
torch file is five pickles (magic number, protocol version, system info, the
checkpoint, the storage keys) followed by raw storage data whose length the
checkpoint's persistent ids determine; that data is skipped, and anything after
it is examined like any other trailing data.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from scanners.context import check_text_rest
from scanners.errors import MalformedError, ScanError
from scanners.pickle_ops import VALID_OPCODES
from scanners.pickle_scan import PickleAnalyzer, PickleResult, is_pickle_start
from scanners.pickle_values import Const, GlobalRef, Seq, Val, const_int, const_str
from scanners.report import Finding, Verdict
from scanners.sniff import SNIFF_BYTES, looks_like_text

if TYPE_CHECKING:
    from scanners.context import Context
    from scanners.source import Reader

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
MAX_PICKLES = 100_000

# Element sizes of legacy storage types (the storage type named in each persistent id).
_STORAGE_ITEMSIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16, "QInt8Storage": 1, "QUInt8Storage": 1,
    "QInt32Storage": 4, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1, "UntypedStorage": 1,
}  # fmt: skip


def _analyzer(ctx: Context, reader: Reader, member: str, depth: int, **kw: object) -> PickleAnalyzer:
    return PickleAnalyzer(
        reader,
        member=member,
        limits=ctx.limits,
        sink=ctx.add_finding,
        nested=ctx.nested_callback(depth),
        **kw,  # type: ignore[arg-type]
    )


def scan_pickle(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    """A stream that starts with a PROTO opcode: every pickle in it, then what follows."""
    first = _analyzer(ctx, reader, member, depth).run()
    return _after_first(ctx, reader, member, depth, first)


def scan_maybe_pickle(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    """Starts with an opcode byte but no PROTO: a protocol 0/1 pickle, text, or unknown binary."""
    head = reader.peek(SNIFF_BYTES)
    text_head = looks_like_text(head, final=reader.size is not None and reader.size <= len(head))
    found: list[Finding] = []
    analyzer = PickleAnalyzer(
        reader, member=member, limits=ctx.limits, sink=found.append, nested=ctx.nested_callback(depth)
    )
    try:
        first = analyzer.run()
    except ScanError as exc:
        if text_head and check_text_rest(ctx, reader, member):
            # Text. Only a known gadget in a pickle-parsable prefix is worth a word:
            # pickle.load would run it before failing.
            for f in found:
                if f.severity is Verdict.MALICIOUS:
                    ctx.add_finding(f)
            return "text"
        for f in found:
            ctx.add_finding(f)
        if analyzer.globals:
            ctx.add(Verdict.ERROR, f"malformed pickle: {exc.message}", member=member, offset=exc.offset)
            return "pickle"
        if not text_head:
            ctx.add(
                Verdict.SUSPICIOUS,
                f"unknown binary format (does not parse as a pickle: {exc.message}); contents not analysed",
                member=member,
                offset=0,
            )
        return "unknown"
    for f in found:
        ctx.add_finding(f)
    return _after_first(ctx, reader, member, depth, first)


def _after_first(ctx: Context, reader: Reader, member: str, depth: int, first: PickleResult) -> str:
    if isinstance(first.value, Const) and first.value.value == LEGACY_MAGIC:
        _legacy_torch(ctx, reader, member, depth)
        return "pytorch-legacy"
    joblib = _rest(ctx, reader, member, depth) + first.joblib_arrays
    return "joblib" if joblib else "pickle"


def _rest(ctx: Context, reader: Reader, member: str, depth: int) -> int:
    """Analyse every further pickle in the stream; returns how many joblib arrays they held."""
    joblib = 0
    for _ in range(MAX_PICKLES):
        if reader.at_eof():
            return joblib
        offset = reader.tell()
        head = reader.peek(2)
        if not (is_pickle_start(head) or head[0] in VALID_OPCODES):
            left = f"{reader.size - offset} bytes" if reader.size is not None else "data"
            ctx.add(
                Verdict.SUSPICIOUS,
                f"{left} after the last pickle at offset {offset} are not a pickle (not analysed)",
                member=member,
                offset=offset,
            )
            return joblib
        try:
            joblib += _analyzer(ctx, reader, member, depth).run().joblib_arrays
        except ScanError as exc:
            severity = Verdict.ERROR if is_pickle_start(head) else Verdict.SUSPICIOUS
            ctx.add(
                severity,
                f"data after the pickle at offset {offset} is not a valid pickle: {exc.message}",
                member=member,
                offset=exc.offset,
            )
            return joblib
    ctx.add(Verdict.ERROR, f"more than {MAX_PICKLES} pickles in one stream", member=member)
    return joblib


def _storage_sizes(pids: list[Val]) -> dict[str, int]:
    """key -> element size, from ('storage', StorageType, key, location, numel, ...) persistent ids."""
    sizes: dict[str, int] = {}
    for pid in pids:
        if not isinstance(pid, Seq) or len(pid.items) < 3 or const_str(pid.items[0]) != "storage":
            continue
        stype, key = pid.items[1], const_str(pid.items[2])
        if isinstance(stype, GlobalRef) and key is not None:
            size = _STORAGE_ITEMSIZE.get(stype.name.rsplit(".", 1)[-1])
            if size is not None:
                sizes[key] = size
    return sizes


def _legacy_torch(ctx: Context, reader: Reader, member: str, depth: int) -> None:
    """The four pickles after the magic number, the raw storages, and anything after them."""
    version = _analyzer(ctx, reader, member, depth).run()
    if const_int(version.value) != 1001:
        ctx.add(Verdict.SUSPICIOUS, "legacy torch file with an unexpected protocol version", member=member)
    _analyzer(ctx, reader, member, depth).run()  # sys_info
    checkpoint = _analyzer(ctx, reader, member, depth).run()
    keys_result = _analyzer(ctx, reader, member, depth, container_cap=10_000_000).run()
    keys = keys_result.value
    if not isinstance(keys, Seq) or keys.truncated or any(const_str(k) is None for k in keys.items):
        raise MalformedError("legacy torch storage key list is not a list of strings", offset=keys_result.start)
    sizes = _storage_sizes(checkpoint.persistent_ids)
    for k in keys.items:
        key = const_str(k)
        assert key is not None
        if key not in sizes:
            raise MalformedError(f"legacy torch storage {key!r} has no known element type", offset=reader.tell())
        (numel,) = struct.unpack("<q", reader.read_exact(8, f"storage {key} size"))
        if numel < 0:
            raise MalformedError(f"legacy torch storage {key!r} has a negative size", offset=reader.tell() - 8)
        reader.skip(numel * sizes[key], f"storage {key} data")
    _rest(ctx, reader, member, depth)


__all__ = ["LEGACY_MAGIC", "scan_maybe_pickle", "scan_pickle"]
