"""Zip archives (PyTorch checkpoints, TorchScript, .npz, plain zips), read so nothing hides.

Readers disagree about zips: PyTorch (miniz) and Python's ``zipfile`` look members
up in the central directory, streaming readers walk the local headers, and they
resolve duplicate names, CRC errors and header mismatches differently. So both
views are collected: every central-directory entry (via ``zipfile``, which only
reads the directory) and every local header reached by walking them from the
start. Each distinct byte range that any reader could take for a member is
scanned by content; bytes that belong to no member are scanned too. Overlapping
members (the overlap bomb) and path traversal are malicious; decompression is
streamed through the bomb-checking inflater.
"""

from __future__ import annotations

import itertools
import re
import struct
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scanners import keras_scan
from scanners.compression import Inflater
from scanners.context import child
from scanners.errors import BombError, LimitExceeded, MalformedError, ScanError
from scanners.report import Verdict
from scanners.source import CHUNK, Reader, Window, WindowFile, random_access

if TYPE_CHECKING:
    from scanners.context import Context

LOCAL_SIG = b"PK\x03\x04"
CENTRAL_SIG = b"PK\x01\x02"
DESC_SIG = b"PK\x07\x08"
_STOP_SIGS = (LOCAL_SIG, CENTRAL_SIG, b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07")
_METHODS = {0: None, 8: "deflate", 12: "bzip2"}
_USUAL_FLAGS = 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0800  # encrypted, deflate options, descriptor, UTF-8
_STORAGE_NAME = re.compile(r"[^/]+/data/[^/]+")
_TORCH_PICKLE = re.compile(r"[^/]+/data\.pkl")
_TORCHSCRIPT = re.compile(r"[^/]+/(constants\.pkl|code/.*)")


@dataclass(slots=True)
class Member:
    """One byte range some reader could take for a member, with every name it goes by."""

    header_offset: int
    data_offset: int
    csize: int
    method: int
    flags: int
    crc: int | None
    names: list[str] = field(default_factory=list)
    in_central: bool = False
    in_local_walk: bool = False
    record_end: int = 0

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.data_offset, self.csize, self.method)

    @property
    def label(self) -> str:
        return self.names[0] if self.names else f"<member@{self.header_offset}>"


def _decode_name(raw: bytes, flags: int) -> str:
    if flags & 0x800:
        return raw.decode("utf-8", "replace")
    return raw.decode("cp437")


def _traversal(name: str) -> bool:
    if "\0" in name:
        return True
    parts = re.split(r"[/\\]", name)
    return name.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:", name)) or ".." in parts


def _local_header(window: Window, offset: int) -> tuple[str, int, int, int, int, int, int] | None:
    """(name, flags, method, crc, csize, data_offset, header_len) of the local header at ``offset``."""
    head = window.read_at(offset, 30)
    if len(head) < 30 or head[:4] != LOCAL_SIG:
        return None
    _, _, flags, method, _, _, crc, csize, usize, nlen, elen = struct.unpack("<IHHHHHIIIHH", head)
    raw = window.read_at(offset + 30, nlen + elen)
    if len(raw) < nlen + elen:
        return None
    name, extra = raw[:nlen], raw[nlen:]
    if csize == 0xFFFFFFFF or usize == 0xFFFFFFFF:
        csize = _zip64_csize(extra, usize == 0xFFFFFFFF, csize)
    return _decode_name(name, flags), flags, method, crc, csize, offset + 30 + nlen + elen, 30 + nlen + elen


def _zip64_csize(extra: bytes, has_usize: bool, csize: int) -> int:
    i = 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack("<HH", extra[i : i + 4])
        body = extra[i + 4 : i + 4 + size]
        if tag == 1:
            pos = 8 if has_usize else 0
            if csize == 0xFFFFFFFF and len(body) >= pos + 8:
                value: int = struct.unpack("<Q", body[pos : pos + 8])[0]
                return value
        i += 4 + size
    return csize


def _descriptor_len(window: Window, data_end: int) -> int:
    """Length of the data descriptor after a member's data (0 if none can be recognised)."""
    for n in (16, 24, 12, 20):
        after = window.read_at(data_end + n, 4)
        has_sig = window.read_at(data_end, 4) == DESC_SIG
        if (n in (16, 24)) != has_sig:
            continue
        if after in _STOP_SIGS or data_end + n == window.length:
            return n
    return 0


def _find_stored_end(window: Window, data_offset: int) -> int | None:
    """For a local-only stored member with a data descriptor: where its data ends."""
    pos = data_offset
    while pos < window.length:
        chunk = window.read_at(pos, CHUNK + 16)
        i = chunk.find(DESC_SIG)
        while i >= 0:
            desc = chunk[i : i + 16]
            if len(desc) == 16:
                csize = struct.unpack("<I", desc[8:12])[0]
                if csize == pos + i - data_offset:
                    return pos + i
            i = chunk.find(DESC_SIG, i + 1)
        pos += CHUNK
    return None


def _central(ctx: Context, window: Window, member: str) -> tuple[list[zipfile.ZipInfo], int | None]:
    try:
        with zipfile.ZipFile(WindowFile(window)) as zf:
            return zf.infolist(), zf.start_dir
    except Exception as exc:
        ctx.add(Verdict.ERROR, f"zip central directory unreadable: {exc}", member=member)
        return [], None


def _collect(ctx: Context, window: Window, member: str) -> tuple[list[Member], int | None]:
    infos, cd_start = _central(ctx, window, member)
    if len(infos) > ctx.limits.max_zip_members:
        raise LimitExceeded(f"zip has {len(infos)} members, more than {ctx.limits.max_zip_members}")
    members: dict[tuple[int, int, int], Member] = {}
    by_header: dict[int, int] = {}  # header offset -> central compressed size

    def add(m: Member, name: str, *, central: bool) -> Member:
        existing = members.setdefault(m.key, m)
        if name not in existing.names:
            existing.names.append(name)
        existing.in_central |= central
        existing.in_local_walk |= not central
        return existing

    for info in infos:
        local = _local_header(window, info.header_offset)
        if local is None:
            ctx.add(Verdict.ERROR, f"central directory entry {info.filename!r} points at no local header",
                    member=member, offset=info.header_offset)  # fmt: skip
            continue
        lname, _lflags, lmethod, _lcrc, lcsize, data_offset, _ = local
        if lname != info.filename:
            ctx.add(Verdict.SUSPICIOUS, f"local header name {lname!r} differs from central name {info.filename!r}",
                    member=member, offset=info.header_offset)  # fmt: skip
        if lmethod != info.compress_type:
            ctx.add(Verdict.SUSPICIOUS, f"member {info.filename!r}: local and central compression methods differ",
                    member=member, offset=info.header_offset)  # fmt: skip
        m = Member(info.header_offset, data_offset, info.compress_size, info.compress_type, info.flag_bits, info.CRC)
        m = add(m, info.filename, central=True)
        if lname != info.filename:
            add(m, lname, central=False)
        by_header[info.header_offset] = info.compress_size
        if lcsize and lcsize != info.compress_size:
            ctx.add(Verdict.SUSPICIOUS, f"member {info.filename!r}: local and central sizes differ",
                    member=member, offset=info.header_offset)  # fmt: skip
            alt = Member(info.header_offset, data_offset, lcsize, lmethod, info.flag_bits, None)
            add(alt, lname, central=False)

    # Walk the local headers from the start, as a streaming reader would.
    offset: int | None = 0 if window.read_at(0, 4) == LOCAL_SIG else (min(by_header) if by_header else None)
    walked = 0
    while offset is not None and offset < window.length:
        local = _local_header(window, offset)
        if local is None:
            break
        walked += 1
        if walked > ctx.limits.max_zip_members:
            raise LimitExceeded(f"zip has more than {ctx.limits.max_zip_members} local headers")
        name, flags, method, crc, csize, data_offset, _ = local
        if offset in by_header:
            csize = by_header[offset]
        elif flags & 0x08 and csize == 0:
            end = _local_only_end(ctx, window, method, data_offset)
            if end is None:
                ctx.add(Verdict.ERROR, f"cannot find where local-only member {name!r} ends",
                        member=member, offset=offset)  # fmt: skip
                break
            csize = end - data_offset
        m = Member(offset, data_offset, csize, method, flags, crc if not flags & 0x08 else None)
        m = add(m, name, central=False)
        data_end = data_offset + csize
        m.record_end = data_end + (_descriptor_len(window, data_end) if flags & 0x08 else 0)
        offset = m.record_end if window.read_at(m.record_end, 4) == LOCAL_SIG else None
    for m in members.values():
        if not m.record_end:
            data_end = m.data_offset + m.csize
            m.record_end = data_end + (_descriptor_len(window, data_end) if m.flags & 0x08 else 0)
    return list(members.values()), cd_start


def _local_only_end(ctx: Context, window: Window, method: int, data_offset: int) -> int | None:
    if method == 0:
        return _find_stored_end(window, data_offset)
    if method == 8:
        reader = Reader(window.sub(data_offset, window.length - data_offset))
        inflater = Inflater(reader, "deflate", budget=ctx.budget)
        while inflater.read(CHUNK):
            pass
        return data_offset + inflater.consumed - len(inflater.d.unused_data) - len(inflater.pending)
    return None


def _check_layout(
    ctx: Context, window: Window, members: list[Member], cd_start: int | None, member: str, depth: int
) -> None:
    """Overlaps are a bomb or a hiding place; gaps hold bytes no member accounts for."""
    records = sorted({(m.header_offset, m.record_end) for m in members})
    for (_a_start, a_end), (b_start, _b_end) in itertools.pairwise(records):
        if b_start < a_end:
            ctx.add(Verdict.MALICIOUS, f"zip members overlap at offset {b_start} (overlap bomb or hidden member)",
                    member=member, offset=b_start)  # fmt: skip
            break
    spans = [*records]
    if cd_start is not None:
        spans.append((cd_start, window.length))
    spans.sort()
    pos = 0
    for start, end in spans:
        if start > pos:
            _scan_gap(ctx, window, pos, start, member, depth)
        pos = max(pos, end)
    if cd_start is None and pos < window.length and members:
        _scan_gap(ctx, window, pos, window.length, member, depth)


def _scan_gap(ctx: Context, window: Window, start: int, end: int, member: str, depth: int) -> None:
    ctx.add(Verdict.SUSPICIOUS, f"{end - start} bytes at offset {start} belong to no zip member (scanned)",
            member=member, offset=start)  # fmt: skip
    ctx.scan_reader(Reader(window.sub(start, end - start)), child(member, f"<gap@{start}>"), depth + 1)


def scan_zip(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    with random_access(reader, ctx.limits.max_spool) as window:
        return _scan_zip_window(ctx, window, member, depth)


def _scan_zip_window(ctx: Context, window: Window, member: str, depth: int) -> str:
    members, cd_start = _collect(ctx, window, member)
    if not members and cd_start is None:
        raise MalformedError("no readable zip members or directory")
    all_names = [n for m in members for n in m.names]
    for name in sorted(set(all_names)):
        if _traversal(name):
            ctx.add(Verdict.MALICIOUS, f"path traversal in member name {name!r}", member=member, symbol=name)
    central_names = [n for m in members if m.in_central for n in m.names]
    for name in sorted({n for n in central_names if central_names.count(n) > 1}):
        ctx.add(Verdict.SUSPICIOUS, f"duplicate member name {name!r}: readers disagree on which copy they load",
                member=member, symbol=name)  # fmt: skip
    for m in members:
        if not m.in_central:
            ctx.add(Verdict.SUSPICIOUS, f"member {m.label!r} is only in the local headers, not the central directory",
                    member=member, offset=m.header_offset)  # fmt: skip
    _check_layout(ctx, window, members, cd_start, member, depth)

    torch_zip = any(_TORCH_PICKLE.fullmatch(n) for n in all_names)
    torchscript = any(_TORCHSCRIPT.fullmatch(n) for n in all_names)
    if torchscript:
        ctx.add(Verdict.SUSPICIOUS, "TorchScript archive: torch.load hands it to torch.jit.load, which runs its code",
                member=member)  # fmt: skip
    labels: list[str] = []
    for m in sorted(members, key=lambda m: m.header_offset):
        try:
            labels.append(_scan_member(ctx, window, m, member, depth, torch_zip))
        except BombError as exc:
            ctx.add(Verdict.MALICIOUS, f"member {m.label!r}: {exc.message}", member=member, offset=m.header_offset)
        except ScanError as exc:
            ctx.add(Verdict.ERROR, f"member {m.label!r}: {exc.message}", member=member, offset=m.header_offset)
    if {"config.json", "metadata.json"} <= set(all_names) and _keras(ctx, window, members, member):
        return "keras"
    if torchscript:
        return "torchscript"
    if torch_zip:
        return "pytorch-zip"
    scanned = [lb for lb in labels if lb != "skipped"]
    if scanned and all(lb.startswith("npy") for lb in scanned):
        return "npz"
    return "zip"


def _keras(ctx: Context, window: Window, members: list[Member], member: str) -> bool:
    """A Keras v3 archive, recognised by its metadata rather than its name: its config is analysed."""

    def documents(name: str) -> list[bytes]:
        found = (_read_small(ctx, window, m, ctx.limits.max_config_bytes) for m in members if name in m.names)
        return [doc for doc in found if doc is not None]

    return keras_scan.check_archive(ctx, documents("config.json"), documents("metadata.json"), member)


def _read_small(ctx: Context, window: Window, m: Member, limit: int) -> bytes | None:
    """A member's content (through the bomb checks) if it is readable and at most ``limit`` bytes."""
    if m.flags & 0x01 or m.method not in _METHODS or m.data_offset + m.csize > window.length:
        return None
    fmt = _METHODS[m.method]
    raw = Reader(window.sub(m.data_offset, m.csize))
    try:
        data = (Reader(Inflater(raw, fmt, budget=ctx.budget, length=m.csize)) if fmt else raw).read(limit + 1)
    except ScanError:
        return None
    return data if len(data) <= limit else None


def _scan_member(ctx: Context, window: Window, m: Member, member: str, depth: int, torch_zip: bool) -> str:
    name = child(member, m.label)
    if m.flags & 0x01:
        ctx.add(Verdict.SUSPICIOUS, f"encrypted member {m.label!r}: not analysed", member=member)
        return "skipped"
    odd = m.flags & ~_USUAL_FLAGS
    if odd:
        ctx.add(Verdict.SUSPICIOUS, f"member {m.label!r} has unusual flag bits 0x{odd:04x}", member=member)
    if m.method not in _METHODS:
        ctx.add(Verdict.SUSPICIOUS, f"member {m.label!r} uses compression method {m.method}: not analysed",
                member=member)  # fmt: skip
        return "skipped"
    if m.data_offset + m.csize > window.length:
        ctx.add(Verdict.ERROR, f"member {m.label!r} extends past the end of the archive", member=member)
        return "skipped"
    raw = Reader(window.sub(m.data_offset, m.csize))
    fmt = _METHODS[m.method]
    storage = torch_zip and all(_STORAGE_NAME.fullmatch(n) and not n.endswith(".pkl") for n in m.names)
    if storage and fmt is None:
        return "skipped"  # raw tensor bytes: torch never unpickles them
    reader = Reader(Inflater(raw, fmt, budget=ctx.budget, length=m.csize), track_crc=True) if fmt else Reader(
        window.sub(m.data_offset, m.csize), track_crc=True
    )
    if storage:
        reader.drain()  # compressed tensor data: decompress through the bomb checks, nothing to analyse
        label = "skipped"
    else:
        label = ctx.scan_reader(reader, name, depth + 1)
        if reader.crc_complete:
            reader.drain()
    if reader.crc_complete and m.crc is not None and reader.crc != m.crc:
        ctx.add(Verdict.SUSPICIOUS, f"CRC mismatch in member {m.label!r} (its content was scanned anyway)",
                member=member)  # fmt: skip
    return label
