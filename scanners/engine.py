"""The dispatcher's table: which scanner handles which detected format, and the scanners for simple formats.

Every container (zip member, tar member, decompressed stream, nested pickle
payload, unexplained gap) comes back through :class:`scanners.context.Context`,
which sniffs it again and asks this table; exceptions from format scanners
become findings there: ``ScanError`` is an ``error``, ``BombError`` is
``malicious``; the scan itself never raises.
"""

from __future__ import annotations

from scanners import (
    numpy_scan,
    onnx_scan,
    pickle_stream,
    safetensors_scan,
    tar_scan,
    tokenizer_config,
    zip_scan,
)
from scanners.compression import Inflater
from scanners.context import Context, Handler, check_text_rest, child
from scanners.limits import Limits
from scanners.report import Report, Verdict
from scanners.sniff import (
    COMPRESSED,
    DATA_FORMATS,
    SNIFF_BYTES,
    UNSUPPORTED_CONTAINERS,
    Kind,
    sniff,
)
from scanners.source import Reader


def new_context(report: Report, limits: Limits) -> Context:
    """A fresh scan that dispatches through this module's table."""
    return Context(report, limits, handler)


# -- simple handlers ------------------------------------------------------------------------------
def _scan_text(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    """Plain text is data, as long as all of it is text; a JSON config's chat templates are code."""
    keeper = tokenizer_config.TextKeeper(ctx.limits.max_config_bytes)
    if not check_text_rest(ctx, reader, member, keeper.add):
        return "unknown"
    tokenizer_config.check(ctx, keeper, member)
    return "text"


def _scan_data(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    return sniff(reader.peek(SNIFF_BYTES), reader.size).value


def _scan_unknown(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    ctx.add(Verdict.SUSPICIOUS, "unknown binary format: contents not analysed", member=member, offset=0)
    return "unknown"


def _scan_unsupported(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    kind = sniff(reader.peek(SNIFF_BYTES), reader.size)
    what = UNSUPPORTED_CONTAINERS.get(kind, kind.value)
    ctx.add(Verdict.SUSPICIOUS, f"unsupported format: {what}; contents not analysed", member=member, offset=0)
    return kind.value


def _scan_compressed(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    kind = sniff(reader.peek(SNIFF_BYTES), reader.size)
    inflater = Inflater(reader, kind.value, budget=ctx.budget)
    inner = Reader(inflater)
    label = ctx.scan_reader(inner, child(member, kind.value), depth + 1)
    inner.drain()  # the rest of the stream: bomb and budget checks, CRC, trailing data
    if inflater.done and inflater.trailing:
        ctx.add(
            Verdict.SUSPICIOUS,
            f"{inflater.trailing}+ bytes after the end of the {kind.value} stream (not analysed)",
            member=member,
        )
    return f"{kind.value}:{label}"


# -- formats whose scanners import heavy libraries ------------------------------------------------
# Every scan runs in a fresh sandbox process, so import time is paid per file: py7zr (with its ciphers) costs
# about 0.1 s, numpy and h5py 0.09 s, jinja2 0.06 s. Only a file of that format imports them.
def _scan_7z(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    from scanners import sevenzip_scan

    return sevenzip_scan.scan_7z(ctx, reader, member, depth)


def _scan_hdf5(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    from scanners import hdf5_scan

    return hdf5_scan.scan_hdf5(ctx, reader, member, depth)


def _scan_gguf(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    from scanners import gguf_scan

    return gguf_scan.scan_gguf(ctx, reader, member, depth)


def handler(kind: Kind) -> Handler:
    """The scanner for a detected format."""
    if kind in DATA_FORMATS:
        return _scan_text if kind is Kind.TEXT else _scan_data
    if kind in COMPRESSED:
        return _scan_compressed
    if kind in UNSUPPORTED_CONTAINERS:
        return _scan_unsupported
    table: dict[Kind, Handler] = {
        Kind.PICKLE: pickle_stream.scan_pickle,
        Kind.MAYBE_PICKLE: pickle_stream.scan_maybe_pickle,
        Kind.ZIP: zip_scan.scan_zip,
        Kind.TAR: tar_scan.scan_tar,
        Kind.SEVENZIP: _scan_7z,
        Kind.NPY: numpy_scan.scan_npy,
        Kind.SAFETENSORS: safetensors_scan.scan_safetensors,
        Kind.GGUF: _scan_gguf,
        Kind.HDF5: _scan_hdf5,
        Kind.ONNX: onnx_scan.scan_onnx,
    }
    return table.get(kind, _scan_unknown)
